package shim

import (
	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/qemu"
)

// newVM returns the VM of a sandbox; QEMU is the VMM. A detached VM's
// QEMU outlives the shim (a reused VM waits in the pool for the next).
func newVM(cfg Config, vc vmm.Config, detached bool) (vmm.VM, error) {
	vm, err := qemu.Driver{Binary: cfg.VM.QEMU, Detached: detached}.NewVM(vc)
	if err != nil {
		return nil, err
	}
	return vm, nil
}
