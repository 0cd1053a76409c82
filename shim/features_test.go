package shim

import (
	"context"
	"slices"
	"testing"

	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// TestInfoFeatures reads the features from Info as containerd's CRI does.
func TestInfoFeatures(t *testing.T) {
	info, err := Manager{}.Info(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Features == nil {
		t.Fatal("Info has no features")
	}
	x, err := typeurl.UnmarshalAny(info.Features)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := x.(*features.Features)
	if !ok {
		t.Fatalf("features are a %T", x)
	}
	for _, o := range []string{"rro", "rbind", "bind", "ro"} {
		if !slices.Contains(f.MountOptions, o) {
			t.Errorf("mount option %q missing from %v", o, f.MountOptions)
		}
	}
	if f.Linux == nil || !slices.Contains(f.Linux.Namespaces, "pid") {
		t.Errorf("Linux features lack the pid namespace: %+v", f.Linux)
	}
	if f.Linux.MountExtensions.IDMap.Enabled == nil || *f.Linux.MountExtensions.IDMap.Enabled {
		t.Error("ID-mapped mounts reported, which 9p shares cannot do")
	}
	if len(f.Hooks) != 0 {
		t.Errorf("hooks %v reported, which the guest cannot run", f.Hooks)
	}
}
