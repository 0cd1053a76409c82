package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// lookupGroups completes a user that the host took from the image
// without the image's files (its snapshotter leaves them to the guest).
// containerd then finds no /etc/passwd: it keeps the uid, sets the
// primary group to 0, and adds no supplementary group. With the rootfs
// the guest pulled, this does what containerd does with one: the primary
// group is the uid's in /etc/passwd, and every group of /etc/group that
// lists the user's name (other than its own) is added. A uid the image
// does not list keeps what the host gave, as with containerd.
//
// The host's group 0 is only replaced when /etc/passwd gives another: a
// pod that set runAsGroup: 0 and a uid whose group is not 0 gets that
// group instead, never more than the image gives the user.
func lookupGroups(rootfs string, u *specs.User) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return fmt.Errorf("look up the image's user: %w", err)
	}
	defer root.Close()
	users, err := parse(root, "etc/passwd", func(f fs.File) ([]user.User, error) {
		return user.ParsePasswdFilter(f, func(e user.User) bool { return e.Uid == int(u.UID) })
	})
	if err != nil || len(users) == 0 {
		return err
	}
	entry := users[0]
	if u.GID == 0 && entry.Gid > 0 {
		u.GID = uint32(entry.Gid)
		// The host listed group 0 as the primary one.
		u.AdditionalGids = slices.DeleteFunc(u.AdditionalGids, func(g uint32) bool { return g == 0 })
	}
	groups, err := parse(root, "etc/group", func(f fs.File) ([]user.Group, error) {
		return user.ParseGroupFilter(f, func(g user.Group) bool {
			return g.Name != entry.Name && slices.Contains(g.List, entry.Name)
		})
	})
	if err != nil {
		return err
	}
	add := []uint32{u.GID}
	for _, g := range groups {
		if g.Gid >= 0 {
			add = append(add, uint32(g.Gid))
		}
	}
	for _, g := range add {
		if !slices.Contains(u.AdditionalGids, g) {
			u.AdditionalGids = append(u.AdditionalGids, g)
		}
	}
	slices.Sort(u.AdditionalGids)
	return nil
}

// parse reads one of the image's account files, within its root (a
// symlink cannot lead outside it); a file the image lacks has no entries.
func parse[T any](root *os.Root, name string, read func(fs.File) ([]T, error)) ([]T, error) {
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up the image's user: %w", err)
	}
	defer f.Close()
	entries, err := read(f)
	if err != nil {
		return nil, fmt.Errorf("look up the image's user: %s: %w", name, err)
	}
	return entries, nil
}
