package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sccontainers/scc/vmm/qemu/qmp"
)

// migratePoll is how often Save and Restore poll the migration status.
const migratePoll = 20 * time.Millisecond

// Save pauses the VM and streams its state into path through QEMU's
// migration ("exec:" URI, since QEMU 7.2 has no "file:" one). The VM stays
// paused. The memory of a VM whose memory is a shared file is left out of
// the state (migration capability x-ignore-shared): the file holds it, and
// VMs restored from the state map it (vmm.MemoryFile). QEMU refuses while the guest has a virtio-9p share mounted; that
// error comes back as a *qmp.Error.
func (v *VM) Save(ctx context.Context, path string) error {
	v.op.Lock()
	defer v.op.Unlock()
	if err := v.snapshotSupported("save"); err != nil {
		return err
	}
	if err := v.expect("save", running, paused); err != nil {
		return err
	}
	c := v.client()
	if v.currentState() == running {
		if err := c.Execute(ctx, "stop", nil, nil); err != nil {
			return fmt.Errorf("save vm: pause: %w", err)
		}
		v.setState(paused)
	}
	// QEMU 7.2 caps migration at 32 MiB/s by default: a local file needs
	// no cap.
	if err := c.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}, nil); err != nil {
		return fmt.Errorf("save vm: set bandwidth: %w", err)
	}
	if v.cfg.Memory.Shared {
		if err := setIgnoreShared(ctx, c); err != nil {
			return fmt.Errorf("save vm: %w", err)
		}
	}
	uri := "exec:cat > " + shellQuote(path)
	if err := c.Execute(ctx, "migrate", map[string]any{"uri": uri}, nil); err != nil {
		return fmt.Errorf("save vm: %w", err)
	}
	if err := waitMigration(ctx, c); err != nil {
		// Leave no half-written state behind for a later Restore.
		c.Execute(context.WithoutCancel(ctx), "migrate_cancel", nil, nil)
		os.Remove(path)
		return fmt.Errorf("save vm: %w", err)
	}
	return nil
}

// Restore launches QEMU waiting for incoming state, loads the state Save
// wrote to path and leaves the VM paused; Resume starts it. The VM must be
// in the created state and built from the same Config (same devices,
// memory and vCPUs) as the one saved. On failure QEMU is stopped.
func (v *VM) Restore(ctx context.Context, path string) error {
	v.op.Lock()
	defer v.op.Unlock()
	if err := v.snapshotSupported("restore"); err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("restore vm: %w", err)
	}
	if err := v.launch(ctx, true); err != nil {
		return fmt.Errorf("restore vm: %w", err)
	}
	c := v.client()
	var err error
	if v.cfg.Memory.File != "" {
		// The state leaves out the memory, which the VM maps from the
		// file instead.
		err = setIgnoreShared(ctx, c)
	}
	if err == nil {
		uri := "exec:cat " + shellQuote(path)
		err = c.Execute(ctx, "migrate-incoming", map[string]any{"uri": uri}, nil)
	}
	if err == nil {
		err = waitMigration(ctx, c)
	}
	if err != nil {
		v.mu.Lock()
		v.stopping = true
		v.mu.Unlock()
		if kerr := v.kill(); kerr != nil {
			err = errors.Join(err, kerr)
		}
		c.Close()
		v.removeRuntimeFiles()
		v.mu.Lock()
		v.state, v.exitErr = stopped, err
		v.mu.Unlock()
		return fmt.Errorf("restore vm: %w", err)
	}
	v.setState(paused)
	return nil
}

// setIgnoreShared has migration skip RAM blocks backed by shared files;
// the saving and the restoring QEMU must agree on it, since it changes the
// stream's format.
func setIgnoreShared(ctx context.Context, c *qmp.Client) error {
	caps := []map[string]any{{"capability": "x-ignore-shared", "state": true}}
	if err := c.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
		return fmt.Errorf("set migration capability x-ignore-shared: %w", err)
	}
	return nil
}

// waitMigration polls query-migrate until the migration in either
// direction has completed or failed.
func waitMigration(ctx context.Context, c *qmp.Client) error {
	t := time.NewTicker(migratePoll)
	defer t.Stop()
	for {
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := c.Execute(ctx, "query-migrate", nil, &st); err != nil {
			return err
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration %s: %s", st.Status, st.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for migration: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// shellQuote quotes s for /bin/sh, which runs "exec:" migration commands.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
