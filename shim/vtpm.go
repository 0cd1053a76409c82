package shim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	agent "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/attest/vtpm"
	"github.com/sccontainers/scc/attest/vtpm/swtpm"
	"github.com/sccontainers/scc/vmm"
)

// vTPM is a VM's vTPM: an swtpm of its own, with its state in the VM's
// directory, which the guest reaches through a virtio-serial port. A
// template's TPM is never saved with it: every VM, restored ones too,
// has a new TPM and so a TPM identity of its own.
type vTPM struct {
	*swtpm.Swtpm
	// akPublic is the TPM's attestation key (vtpm.AKPublic), read before
	// the VM connects: the key a verifier pins for this VM
	// (vtpm.AKDigest).
	akPublic []byte
}

// startVTPM starts a new vTPM for a VM whose state is in dir: the state
// of an earlier one there is removed first.
func startVTPM(ctx context.Context, dir string) (_ *vTPM, retErr error) {
	state := filepath.Join(dir, "tpm")
	if err := os.RemoveAll(state); err != nil {
		return nil, fmt.Errorf("start vTPM: %w", err)
	}
	s, err := swtpm.StartSwtpm(ctx, state, swtpm.WithCommandSocket())
	if err != nil {
		return nil, fmt.Errorf("start vTPM: %w", err)
	}
	defer func() {
		if retErr != nil {
			s.Stop()
		}
	}()
	// The emulator serves one connection at a time: the host's is closed
	// before QEMU makes its own.
	tpm, err := s.OpenTPM()
	if err != nil {
		return nil, fmt.Errorf("start vTPM: %w", err)
	}
	defer tpm.Close()
	ak, err := vtpm.AKPublic(tpm)
	if err != nil {
		return nil, fmt.Errorf("start vTPM: %w", err)
	}
	// Beside the VM's state, for whoever pins this VM's key in a
	// verifier's policy.
	if err := os.WriteFile(filepath.Join(dir, VTPMAKName), ak, 0o644); err != nil {
		return nil, fmt.Errorf("start vTPM: %w", err)
	}
	return &vTPM{Swtpm: s, akPublic: ak}, nil
}

// VTPMAKName is the file in a VM's state directory that holds its vTPM's
// attestation key (TPMT_PUBLIC, vtpm.AKPublic), written before the VM
// starts: vtpm.AKDigest of it is what a key broker's policy trusts
// (trusted_aks).
const VTPMAKName = "tpm-ak.pub"

// device is how the VM attaches the vTPM.
func (t *vTPM) device() *vmm.TPM {
	return &vmm.TPM{Socket: t.CmdPath, Port: agent.TPMPortName}
}

// tpmParam is the guest kernel parameter that points the guest's monitor
// at the vTPM's port.
const tpmParam = agent.TPMParam + "=" + agent.TPMPortName
