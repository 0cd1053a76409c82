package qemu

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"
)

// WaitPortOpen blocks until the guest opens a virtio-serial port (QMP's
// VSERPORT_CHANGE with open=true). The guest agent opens its port when it
// is ready to serve, so this tells a booted guest without connecting to
// the port. It must be the only reader of the VM's QMP events.
func (v *VM) WaitPortOpen(ctx context.Context) error {
	c := v.client()
	if c == nil {
		return fmt.Errorf("wait for port: vm not started: %w", errdefs.ErrFailedPrecondition)
	}
	for {
		select {
		case e := <-c.Events():
			if e.Name != "VSERPORT_CHANGE" {
				continue
			}
			var d struct {
				Open bool `json:"open"`
			}
			if json.Unmarshal(e.Data, &d) == nil && d.Open {
				return nil
			}
		case <-v.done:
			return fmt.Errorf("wait for port: vm exited: %w", v.Err())
		case <-ctx.Done():
			return fmt.Errorf("wait for port: %w", ctx.Err())
		}
	}
}
