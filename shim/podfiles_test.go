package shim

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestResolvConf(t *testing.T) {
	got := resolvConf(&runtime.DNSConfig{
		Servers:  []string{"10.0.0.10", "8.8.8.8"},
		Searches: []string{"default.svc.cluster.local", "svc.cluster.local"},
		Options:  []string{"ndots:5", "timeout:1"},
	})
	want := "search default.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\nnameserver 8.8.8.8\noptions ndots:5 timeout:1\n"
	if got != want {
		t.Errorf("resolv.conf\n%s\nwant\n%s", got, want)
	}
	if got := resolvConf(&runtime.DNSConfig{}); got != "" {
		t.Errorf("empty DNS config gives %q", got)
	}
}

func TestPodFilesMountInto(t *testing.T) {
	f := podFiles{dir: "/run/scc/pod1/shared/.pod"}
	bind := func(dst, name string, ro bool) specs.Mount {
		opts := []string{"rbind", "rprivate"}
		if ro {
			opts = append(opts, "ro")
		}
		return specs.Mount{Destination: dst, Type: "bind", Source: f.path(name), Options: opts}
	}
	own := specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: "/var/lib/kubelet/pods/x/etc-hosts", Options: []string{"rbind"}}
	for _, tc := range []struct {
		name   string
		spec   *specs.Spec
		mounts []specs.Mount
	}{
		{"default spec", &specs.Spec{Mounts: []specs.Mount{{Destination: "/dev/shm", Type: "tmpfs", Source: "shm"}}},
			[]specs.Mount{bind("/dev/shm", "shm", false), bind("/etc/hostname", "hostname", false), bind("/etc/hosts", "hosts", false), bind("/etc/resolv.conf", "resolv.conf", false)}},
		{"read-only rootfs, kubelet's hosts", &specs.Spec{Root: &specs.Root{Readonly: true}, Mounts: []specs.Mount{own}},
			[]specs.Mount{own, bind("/etc/hostname", "hostname", true), bind("/etc/resolv.conf", "resolv.conf", true), bind("/dev/shm", "shm", false)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.mountInto(tc.spec)
			if !reflect.DeepEqual(tc.spec.Mounts, tc.mounts) {
				t.Errorf("mounts\n%+v\nwant\n%+v", tc.spec.Mounts, tc.mounts)
			}
		})
	}
	spec := &specs.Spec{}
	podFiles{}.mountInto(spec)
	if len(spec.Mounts) != 0 {
		t.Errorf("no pod files, yet mounts %+v", spec.Mounts)
	}
}

func TestWritePodFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting the pod's /dev/shm needs root")
	}
	shared := t.TempDir()
	f, err := writePodFiles(shared, &runtime.PodSandboxConfig{Hostname: "pod1", DnsConfig: &runtime.DNSConfig{Servers: []string{"10.0.0.10"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unshareLeftover(filepath.Join(shared, podFilesDir)); err != nil {
			t.Error(err)
		}
	})
	for name, want := range map[string]string{"hostname": "pod1\n", "resolv.conf": "nameserver 10.0.0.10\n"} {
		if b, err := os.ReadFile(f.path(name)); err != nil || string(b) != want {
			t.Errorf("%s: %q (%v), want %q", name, b, err, want)
		}
	}
	if _, err := os.Stat(f.path("hosts")); err != nil {
		t.Error(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(f.path("shm"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		t.Errorf("pod /dev/shm is not a tmpfs: %x", st.Type)
	}
}
