package shim

import (
	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/qemu"
)

// newVM returns the VM of a sandbox; QEMU is the VMM.
func newVM(cfg Config, vc vmm.Config) (vmm.VM, error) {
	vm, err := qemu.Driver{Binary: cfg.VM.QEMU}.NewVM(vc)
	if err != nil {
		return nil, err
	}
	return vm, nil
}
