package clh

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
)

// snapshotConfigName is the file in a snapshot directory holding the saved
// VM's configuration (cloud-hypervisor's VmConfig).
const snapshotConfigName = "config.json"

// Save pauses the VM and has cloud-hypervisor write its state into the
// directory dir (PUT /vm.snapshot), which is created and must not hold an
// earlier snapshot. The VM stays paused. Confidential guests cannot be
// saved.
func (v *VM) Save(ctx context.Context, dir string) error {
	v.op.Lock()
	defer v.op.Unlock()
	if v.cfg.TEE.Confidential() {
		return fmt.Errorf("save vm: %w: %s guests cannot be saved", errdefs.ErrNotImplemented, v.cfg.TEE.Type)
	}
	if err := v.expect("save", running, paused); err != nil {
		return err
	}
	c := v.client()
	if v.currentState() == running {
		if err := c.put(ctx, "vm.pause", nil); err != nil {
			return fmt.Errorf("save vm: pause: %w", err)
		}
		v.setState(paused)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save vm: %w", err)
	}
	if err := c.put(ctx, "vm.snapshot", snapshotConfig{DestinationURL: fileURL(dir)}); err != nil {
		return fmt.Errorf("save vm: %w", err)
	}
	return nil
}

// Restore launches cloud-hypervisor and restores the snapshot in dir (PUT
// /vm.restore), leaving the VM paused. The snapshot's devices keep the
// socket and log paths of the VM that was saved, so this VM must use the
// same StateDir; Restore refuses otherwise.
func (v *VM) Restore(ctx context.Context, dir string) error {
	v.op.Lock()
	defer v.op.Unlock()
	if v.cfg.TEE.Confidential() {
		return fmt.Errorf("restore vm: %w: %s guests cannot be restored", errdefs.ErrNotImplemented, v.cfg.TEE.Type)
	}
	if err := v.checkSnapshot(dir); err != nil {
		return fmt.Errorf("restore vm: %w", err)
	}
	err := v.launch(ctx, func(ctx context.Context, c *client) error {
		return c.put(ctx, "vm.restore", restoreConfig{SourceURL: fileURL(dir)})
	})
	if err != nil {
		return fmt.Errorf("restore vm: %w", err)
	}
	v.setState(paused)
	return nil
}

// checkSnapshot reads the saved configuration and refuses a snapshot whose
// agent socket or console log lie outside this VM's StateDir.
func (v *VM) checkSnapshot(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, snapshotConfigName))
	if err != nil {
		return err
	}
	var saved struct {
		Serial  ConsoleConfig `json:"serial"`
		Console ConsoleConfig `json:"console"`
	}
	if err := json.Unmarshal(b, &saved); err != nil {
		return fmt.Errorf("snapshot %s: %w", snapshotConfigName, err)
	}
	if saved.Console.Socket != v.cfg.AgentAddr() || saved.Serial.File != v.cfg.ConsoleLog() {
		return fmt.Errorf("%w: snapshot was taken with agent socket %q and console %q; cloud-hypervisor restores those paths, not %q and %q",
			errdefs.ErrFailedPrecondition, saved.Console.Socket, saved.Serial.File, v.cfg.AgentAddr(), v.cfg.ConsoleLog())
	}
	return nil
}

func fileURL(path string) string {
	return (&url.URL{Scheme: "file", Path: path}).String()
}
