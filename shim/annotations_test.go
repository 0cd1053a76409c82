package shim

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
)

func TestApplyAnnotations(t *testing.T) {
	all := AnnotationPolicy{Enable: []string{`io\.scc\..*`}}
	for _, tc := range []struct {
		name    string
		policy  AnnotationPolicy
		ann     map[string]string
		modify  func(*Config) // what the annotations must change
		wantErr error         // nil: success
	}{
		{
			name: "no annotations",
		},
		{
			name: "foreign annotations are ignored",
			ann:  map[string]string{"io.kubernetes.cri.container-type": "sandbox", "example.com/vcpus": "8"},
		},
		{
			name: "sandbox id is the shim's own",
			ann:  map[string]string{"io.scc.sandbox-id": "pod-1"},
		},
		{
			name:   "vcpus and memory by exact names",
			policy: AnnotationPolicy{Enable: []string{AnnotationVCPUs, AnnotationMemoryMiB}},
			ann:    map[string]string{AnnotationVCPUs: "4", AnnotationMemoryMiB: "2048"},
			modify: func(c *Config) { c.VM.VCPUs, c.VM.MemoryMiB = 4, 2048 },
		},
		{
			name:   "bounds are inclusive",
			policy: all,
			ann:    map[string]string{AnnotationVCPUs: "64", AnnotationMemoryMiB: "128"},
			modify: func(c *Config) { c.VM.VCPUs, c.VM.MemoryMiB = 64, 128 },
		},
		{
			name:   "kernel params are appended",
			policy: all,
			ann:    map[string]string{AnnotationKernelParams: " loglevel=7  hugepages=16 "},
			modify: func(c *Config) { c.VM.ExtraArgs = []string{"mitigations=auto", "loglevel=7", "hugepages=16"} },
		},
		{
			name:   "snapshot off",
			policy: all,
			ann:    map[string]string{AnnotationSnapshot: "false"},
			modify: func(c *Config) { c.Snapshot.Enabled = false },
		},
		{
			name:   "snapshot on when already on",
			policy: all,
			ann:    map[string]string{AnnotationSnapshot: "true"},
		},
		{
			name:    "not enabled",
			policy:  AnnotationPolicy{Enable: []string{AnnotationMemoryMiB}},
			ann:     map[string]string{AnnotationVCPUs: "2"},
			wantErr: errdefs.ErrPermissionDenied,
		},
		{
			name:    "empty policy enables nothing",
			ann:     map[string]string{AnnotationSnapshot: "false"},
			wantErr: errdefs.ErrPermissionDenied,
		},
		{
			name:    "patterns match whole names",
			policy:  AnnotationPolicy{Enable: []string{`io\.scc\.vm\.vcpu`}},
			ann:     map[string]string{AnnotationVCPUs: "2"},
			wantErr: errdefs.ErrPermissionDenied,
		},
		{
			name:    "unknown annotation",
			policy:  all,
			ann:     map[string]string{"io.scc.vm.vcpu": "2"},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "kernel is never overridable",
			policy:  all,
			ann:     map[string]string{"io.scc.vm.kernel": "/tmp/vmlinux"},
			wantErr: errdefs.ErrPermissionDenied,
		},
		{
			name:    "qemu is never overridable",
			policy:  AnnotationPolicy{Enable: []string{".*"}},
			ann:     map[string]string{"io.scc.vm.qemu": "/tmp/qemu"},
			wantErr: errdefs.ErrPermissionDenied,
		},
		{
			name:    "state dir is never overridable",
			policy:  all,
			ann:     map[string]string{"io.scc.state_dir": "/tmp"},
			wantErr: errdefs.ErrPermissionDenied,
		},
		{
			name:    "TEE settings are never overridable",
			policy:  all,
			ann:     map[string]string{"io.scc.vm.tee.type": "none"},
			wantErr: errdefs.ErrPermissionDenied,
		},
		{
			name:    "vcpus zero",
			policy:  all,
			ann:     map[string]string{AnnotationVCPUs: "0"},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "vcpus above range",
			policy:  all,
			ann:     map[string]string{AnnotationVCPUs: "65"},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "vcpus signed",
			policy:  all,
			ann:     map[string]string{AnnotationVCPUs: "+2"},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "memory below range",
			policy:  all,
			ann:     map[string]string{AnnotationMemoryMiB: "127"},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "memory not a number",
			policy:  all,
			ann:     map[string]string{AnnotationMemoryMiB: "1Gi"},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "kernel params with a newline",
			policy:  all,
			ann:     map[string]string{AnnotationKernelParams: "quiet\ninit=/bin/sh"},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "kernel params with a tab",
			policy:  all,
			ann:     map[string]string{AnnotationKernelParams: "a=1\tb=2"},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "kernel params not ASCII",
			policy:  all,
			ann:     map[string]string{AnnotationKernelParams: "a=\u00e9"},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "init replaced",
			policy:  all,
			ann:     map[string]string{AnnotationKernelParams: "quiet init=/bin/sh"},
			wantErr: errdefs.ErrPermissionDenied,
		},
		{
			name:    "rdinit replaced",
			policy:  all,
			ann:     map[string]string{AnnotationKernelParams: "rdinit=/bin/sh"},
			wantErr: errdefs.ErrPermissionDenied,
		},
		{
			name:    "dash spelling of a denied name",
			policy:  all,
			ann:     map[string]string{AnnotationKernelParams: "nr-cpus=1"},
			wantErr: errdefs.ErrPermissionDenied,
		},
		{
			name:    "agent parameters",
			policy:  all,
			ann:     map[string]string{AnnotationKernelParams: "scc.log=debug"},
			wantErr: errdefs.ErrPermissionDenied,
		},
		{
			name:    "init arguments separator",
			policy:  all,
			ann:     map[string]string{AnnotationKernelParams: "quiet -- --debug"},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "quotes",
			policy:  all,
			ann:     map[string]string{AnnotationKernelParams: `foo="bar init=/bin/sh"`},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "kernel params too long",
			policy:  all,
			ann:     map[string]string{AnnotationKernelParams: strings.Repeat("a", maxKernelParamsLen+1)},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "snapshot not a bool",
			policy:  all,
			ann:     map[string]string{AnnotationSnapshot: "off"},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "one bad annotation rejects the good ones",
			policy:  all,
			ann:     map[string]string{AnnotationVCPUs: "2", AnnotationMemoryMiB: "1"},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "broken policy",
			policy:  AnnotationPolicy{Enable: []string{`io\.scc\.(`}},
			ann:     map[string]string{AnnotationVCPUs: "2"},
			wantErr: errdefs.ErrInvalidArgument,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := DefaultConfig()
			// Spare capacity, shared by cfg: appending must not write
			// into the array the caller's copy holds.
			spare := make([]string, 4)
			spare[0] = "mitigations=auto"
			base.VM.ExtraArgs = spare[:1]
			cfg := base
			err := applyAnnotations(&cfg, tc.policy, tc.ann)
			if !slices.Equal(spare, []string{"mitigations=auto", "", "", ""}) {
				t.Errorf("caller's kernel params changed: %q", spare)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				if !reflect.DeepEqual(cfg, base) {
					t.Errorf("a rejected pod changed the configuration: %+v", cfg.VM)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := base
			want.VM.ExtraArgs = slices.Clone(base.VM.ExtraArgs)
			if tc.modify != nil {
				tc.modify(&want)
			}
			if !reflect.DeepEqual(cfg, want) {
				t.Errorf("config\n%+v\nwant\n%+v", cfg, want)
			}
		})
	}
}

// TestApplyAnnotationsTemplatesOff checks that a pod cannot turn VM
// templates on against the runtime configuration.
func TestApplyAnnotationsTemplatesOff(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Snapshot.Enabled = false
	err := applyAnnotations(&cfg, AnnotationPolicy{Enable: []string{AnnotationSnapshot}}, map[string]string{AnnotationSnapshot: "true"})
	if !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Fatalf("error %v, want permission denied", err)
	}
	if cfg.Snapshot.Enabled {
		t.Error("templates turned on")
	}
}

// TestApplyAnnotationsReportsAll checks that every rejected annotation is
// named, so a pod's author fixes them in one go.
func TestApplyAnnotationsReportsAll(t *testing.T) {
	cfg := DefaultConfig()
	err := applyAnnotations(&cfg, AnnotationPolicy{}, map[string]string{AnnotationVCPUs: "2", "io.scc.vm.initrd": "x"})
	if !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Fatalf("error %v, want permission denied", err)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
		t.Errorf("error %v does not report both annotations", err)
	}
}

func TestAnnotationPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		enable []string
		ok     bool
	}{
		{nil, true},
		{[]string{AnnotationVCPUs, `io\.scc\.vm\..*`}, true},
		{[]string{`[`}, false},
	} {
		err := AnnotationPolicy{Enable: tc.enable}.validate()
		if (err == nil) != tc.ok {
			t.Errorf("%q: error %v, want ok=%v", tc.enable, err, tc.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: error %v is not an invalid argument", tc.enable, err)
		}
	}
}

// TestOverridableAreNotProtected guards the two lists against each other.
func TestOverridableAreNotProtected(t *testing.T) {
	for name := range overridable {
		if isProtectedAnnotation(name) {
			t.Errorf("%s is both overridable and protected", name)
		}
	}
}

// TestDocsAnnotationExample checks the enable_annotations example of
// docs/kubernetes.md enables what the docs say it does.
func TestDocsAnnotationExample(t *testing.T) {
	md, err := os.ReadFile("../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	var example string
	for _, l := range strings.Split(string(md), "\n") {
		if strings.HasPrefix(l, "enable_annotations = ") {
			example = l
		}
	}
	if example == "" {
		t.Fatal("no enable_annotations example in docs/kubernetes.md")
	}
	var c struct {
		Enable []string `toml:"enable_annotations"`
	}
	if err := toml.Unmarshal([]byte(example), &c); err != nil {
		t.Fatal(err)
	}
	policy := AnnotationPolicy{Enable: c.Enable}
	for name, value := range map[string]string{AnnotationVCPUs: "2", AnnotationMemoryMiB: "1024", AnnotationSnapshot: "false"} {
		cfg := DefaultConfig()
		if err := applyAnnotations(&cfg, policy, map[string]string{name: value}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	cfg := DefaultConfig()
	if err := applyAnnotations(&cfg, policy, map[string]string{AnnotationKernelParams: "quiet"}); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("kernel params enabled by the example: %v", err)
	}
}
