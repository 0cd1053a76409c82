package monitor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sccontainers/scc/guest-agent/vport"
)

// portsWait bounds the wait for the host to replace the virtio-serial
// ports during a clean.
const portsWait = 60 * time.Second

// portInodes identifies the virtio-serial ports called names, those the
// guest has: the inode of each one's sysfs directory, which a port the
// host removed and added again under the same name does not keep (sysfs
// never reuses an inode number at once), where its device number may stay
// the same.
func portInodes(sysDir string, names []string) (map[string]uint64, error) {
	ids := map[string]uint64{}
	for _, n := range names {
		ino, err := portInode(sysDir, n)
		if err != nil {
			return nil, err
		}
		if ino != 0 {
			ids[n] = ino
		}
	}
	return ids, nil
}

// portInode returns the sysfs inode of the port called name, 0 if the
// guest has none.
func portInode(sysDir, name string) (uint64, error) {
	dev, err := vport.Lookup(sysDir, name)
	if err != nil || dev == "" {
		return 0, err
	}
	fi, err := os.Stat(filepath.Join(sysDir, filepath.Base(dev)))
	if err != nil {
		return 0, nil // going away
	}
	return fi.Sys().(*syscall.Stat_t).Ino, nil
}

// waitReplaced returns once every port of before is there again as a new
// port: the host removed it (the guest freed its buffers) and added it
// again.
func waitReplaced(ctx context.Context, sysDir string, before map[string]uint64) error {
	ctx, cancel := context.WithTimeout(ctx, portsWait)
	defer cancel()
	for {
		var missing []string
		for name, old := range before {
			ino, err := portInode(sysDir, name)
			if err != nil {
				return err
			}
			if ino == 0 || ino == old {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the host did not replace the ports %v: %w", missing, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
