package qemu

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"
)

// WaitPortOpen blocks until the guest opens the agent's virtio-serial
// port (QMP's VSERPORT_CHANGE with open=true for its device). The guest
// agent opens its port when it is ready to serve, so this tells a booted
// guest without connecting to the port; other ports (the vTPM's, which
// the guest opens earlier in its boot) do not count. It must be the only
// reader of the VM's QMP events.
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
				ID   string `json:"id"`
				Open bool   `json:"open"`
			}
			if json.Unmarshal(e.Data, &d) == nil && d.Open && d.ID == agentPortID {
				return nil
			}
		case <-v.done:
			return fmt.Errorf("wait for port: vm exited: %w", v.Err())
		case <-ctx.Done():
			return fmt.Errorf("wait for port: %w", ctx.Err())
		}
	}
}
