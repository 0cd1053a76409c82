package shim

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestSubmountOptions(t *testing.T) {
	for _, tc := range []struct {
		parent []string
		vfs    string
		want   []string
	}{
		{[]string{"rbind", "rprivate", "ro"}, "rw,relatime", []string{"bind", "rprivate"}},
		{[]string{"rbind", "rslave", "ro", "nosuid"}, "ro,nosuid,nodev,noexec,relatime", []string{"bind", "rslave", "ro", "nosuid", "nodev", "noexec"}},
		{[]string{"rbind", "ro"}, "rw", []string{"bind"}},
	} {
		if got := submountOptions(tc.parent, tc.vfs); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("submountOptions(%v, %q) = %v, want %v", tc.parent, tc.vfs, got, tc.want)
		}
	}
}

// TestShareBind shares a directory holding a tmpfs, which holds another,
// as each kind of bind mount, and checks which submounts the guest gets
// through the share and which on their own.
func TestShareBind(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	src := t.TempDir()
	outer := filepath.Join(src, "tmpfs")
	inner := filepath.Join(outer, "inner")
	mountTmpfs := func(dir string) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("none", dir, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	}
	mountTmpfs(outer)
	mountTmpfs(inner)
	if err := os.WriteFile(filepath.Join(outer, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		options []string
		// whether the share of the source shows the tmpfs's file
		recursive bool
		// guest mounts after the source's own: destination -> options
		subs []specs.Mount
	}{
		{"rbind", []string{"rbind", "rprivate", "rw"}, true, nil},
		{"rbind rro", []string{"rbind", "rprivate", "rro"}, true, nil},
		{"bind ro", []string{"bind", "ro"}, false, nil},
		{"rbind ro", []string{"rbind", "rprivate", "ro"}, false, []specs.Mount{
			{Destination: "/mnt/tmpfs", Type: "bind", Source: "/guest/m0.0", Options: []string{"bind", "rprivate"}},
			{Destination: "/mnt/tmpfs/inner", Type: "bind", Source: "/guest/m0.1", Options: []string{"bind", "rprivate"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hostDir := t.TempDir()
			m := specs.Mount{Destination: "/mnt", Type: "bind", Source: src, Options: tc.options}
			guest, targets, err := shareBind(m, hostDir, "/guest", "m0")
			t.Cleanup(func() {
				for i := len(targets) - 1; i >= 0; i-- {
					mount.UnmountAll(targets[i], unix.MNT_DETACH)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			want := append([]specs.Mount{{Destination: "/mnt", Type: "bind", Source: "/guest/m0", Options: tc.options}}, tc.subs...)
			if !reflect.DeepEqual(guest, want) {
				t.Errorf("guest mounts:\n%+v\nwant\n%+v", guest, want)
			}
			_, err = os.Stat(filepath.Join(hostDir, "m0", "tmpfs", "f"))
			if got := err == nil; got != tc.recursive {
				t.Errorf("share shows the submount: %v, want %v", got, tc.recursive)
			}
			if tc.subs != nil {
				if _, err := os.Stat(filepath.Join(hostDir, "m0.0", "f")); err != nil {
					t.Errorf("submount not shared on its own: %v", err)
				}
			}
		})
	}
}
