package agent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestLookupGroups(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnogroup:x:1001:0::/:/bin/sh\n")
	write("etc/group", "root:x:0:\napp:x:1000:app\nextra:x:2000:other,app\nunrelated:x:3000:other\n")

	for _, tc := range []struct {
		name string
		in   specs.User
		want specs.User
	}{
		// What containerd gives when it found no /etc/passwd.
		{"image user", specs.User{UID: 1000, GID: 0, AdditionalGids: []uint32{0}}, specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 2000}}},
		// A pod's supplemental group stays.
		{"with a pod group", specs.User{UID: 1000, GID: 0, AdditionalGids: []uint32{0, 5000}}, specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 2000, 5000}}},
		// runAsGroup kept: only a group 0 is the host's guess.
		{"explicit group", specs.User{UID: 1000, GID: 4000, AdditionalGids: []uint32{4000}}, specs.User{UID: 1000, GID: 4000, AdditionalGids: []uint32{2000, 4000}}},
		{"root", specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0}}, specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0}}},
		{"user whose group is 0", specs.User{UID: 1001, GID: 0, AdditionalGids: []uint32{0}}, specs.User{UID: 1001, GID: 0, AdditionalGids: []uint32{0}}},
		{"uid the image does not list", specs.User{UID: 4242, GID: 0, AdditionalGids: []uint32{0}}, specs.User{UID: 4242, GID: 0, AdditionalGids: []uint32{0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.in
			u.AdditionalGids = slices.Clone(tc.in.AdditionalGids)
			if err := lookupGroups(root, &u); err != nil {
				t.Fatal(err)
			}
			if u.UID != tc.want.UID || u.GID != tc.want.GID || !slices.Equal(u.AdditionalGids, tc.want.AdditionalGids) {
				t.Errorf("got %+v, want %+v", u, tc.want)
			}
		})
	}

	// No account files: nothing changes.
	u := specs.User{UID: 1000, AdditionalGids: []uint32{0}}
	if err := lookupGroups(t.TempDir(), &u); err != nil || u.GID != 0 || !slices.Equal(u.AdditionalGids, []uint32{0}) {
		t.Errorf("without /etc/passwd: %+v, %v", u, err)
	}
	// A symlink out of the image is not followed.
	escape := t.TempDir()
	if err := os.MkdirAll(filepath.Join(escape, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(escape, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	u = specs.User{UID: 0, AdditionalGids: []uint32{0}}
	if err := lookupGroups(escape, &u); err == nil {
		t.Error("followed a symlink out of the rootfs")
	}
}
