package qemu

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/sccontainers/scc/vmm"
)

func TestTakePort(t *testing.T) {
	v := &VM{cfg: vmm.Config{HotplugPorts: 3, Net: []vmm.NetDevice{{Hotplug: true}}}}
	// Port 0 is the hotplugged interface's.
	for _, want := range []int{1, 2} {
		got, err := v.takePort("d")
		if err != nil || got != want {
			t.Fatalf("takePort = %d, %v; want %d", got, err, want)
		}
	}
	if _, err := v.takePort("d"); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("takePort with every port taken = %v, want ErrResourceExhausted", err)
	}
	v.releasePort(1)
	if got, err := v.takePort("d"); err != nil || got != 1 {
		t.Fatalf("takePort after release = %d, %v; want 1", got, err)
	}
}

func TestAddDiskChecks(t *testing.T) {
	v := &VM{cfg: vmm.Config{HotplugPorts: 1}}
	if err := v.AddDisk(context.Background(), "/x", "bad serial!"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("AddDisk with a bad serial = %v, want ErrInvalidArgument", err)
	}
	if err := v.AddDisk(context.Background(), "/x", "scc0123"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("AddDisk before start = %v, want ErrFailedPrecondition", err)
	}
}
