package initsys

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestEnableControllers(t *testing.T) {
	tests := []struct {
		name      string
		available string
		want      string
	}{
		{name: "all common", available: "cpuset cpu io memory hugetlb pids rdma misc\n", want: "+cpuset\n+cpu\n+io\n+memory\n+hugetlb\n+pids\n+rdma\n+misc\n"},
		{name: "some missing", available: "cpu memory pids\n", want: "+cpu\n+memory\n+pids\n"},
		{name: "unknown ones ignored", available: "cpu perf_event\n", want: "+cpu\n"},
		{name: "none", available: "\n", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte(tt.available), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := EnableControllers(context.Background(), root); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(root, "cgroup.subtree_control"))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("wrote %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEnableControllersNoCgroup2(t *testing.T) {
	if err := EnableControllers(context.Background(), t.TempDir()); err == nil {
		t.Fatal("EnableControllers succeeded without cgroup.controllers")
	}
}

func TestMakeDevLinks(t *testing.T) {
	dev := t.TempDir()
	// devtmpfs has a ptmx node; it must be replaced by the link.
	if err := os.WriteFile(filepath.Join(dev, "ptmx"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := makeDevLinks(dev); err != nil {
		t.Fatal(err)
	}
	// Running twice (a restarted setup) must work too.
	if err := makeDevLinks(dev); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ name, target string }{
		{"ptmx", "pts/ptmx"},
		{"fd", "/proc/self/fd"},
		{"stdin", "/proc/self/fd/0"},
		{"stdout", "/proc/self/fd/1"},
		{"stderr", "/proc/self/fd/2"},
	} {
		got, err := os.Readlink(filepath.Join(dev, want.name))
		if err != nil || got != want.target {
			t.Errorf("%s -> %q, %v; want %q", want.name, got, err, want.target)
		}
	}
}

func TestRootFSType(t *testing.T) {
	tests := []struct {
		name      string
		mountinfo string
		want      string
	}{
		{
			name:      "initramfs",
			mountinfo: "1 1 0:2 / / rw - rootfs rootfs rw,size=1000k\n20 1 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw\n",
			want:      "rootfs",
		},
		{
			name:      "disk root with optional fields",
			mountinfo: "22 27 0:21 / /proc rw,relatime - proc proc rw\n27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n",
			want:      "ext4",
		},
		{
			name:      "tmpfs stacked over rootfs",
			mountinfo: "1 1 0:2 / / rw - rootfs rootfs rw\n30 1 0:40 / / rw - tmpfs tmpfs rw\n",
			want:      "tmpfs",
		},
		{name: "empty", mountinfo: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rootFSType(tt.mountinfo); got != tt.want {
				t.Fatalf("rootFSType = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCmdlineValue(t *testing.T) {
	const cmdline = "console=ttyS0 quiet scc.log=debug scc.hostname=pod-1 scc.empty=\n"
	tests := []struct {
		key    string
		want   string
		wantOK bool
	}{
		{"scc.log", "debug", true},
		{"scc.hostname", "pod-1", true},
		{"quiet", "", true},
		{"scc.empty", "", true},
		{"scc", "", false},
		{"absent", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, ok := CmdlineValue(cmdline, tt.key)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("CmdlineValue(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
