package shim

import (
	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/qemu"
)

// newVM returns the VM of a sandbox; QEMU is the VMM.
func newVM(cfg Config, vc vmm.Config) (vmm.VM, error) {
	return qemu.Driver{Binary: cfg.VM.QEMU}.New(vc)
}
