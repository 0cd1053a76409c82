package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	agent "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/attest/vtpm"
	"github.com/sccontainers/scc/attest/vtpm/swtpm"
	"github.com/sccontainers/scc/vmm"
)

// tpmDirName is the directory of a VM's vTPM in the VM's state
// directory: its state, log and sockets.
const tpmDirName = "tpm"

// akFileName, in a detached vTPM's directory, holds the attestation key
// the host read when it started the vTPM, for the process that adopts it.
const akFileName = "ak.pub"

// vTPM is a VM's vTPM: an swtpm of its own, with its state in a
// directory of the VM's, which the guest reaches through a virtio-serial
// port. A template's TPM is never saved with it: every VM, restored ones
// too, has a new TPM and so a TPM identity of its own; a reused VM gets a
// new one for each tenant.
type vTPM struct {
	// dir is the emulator's directory.
	dir string
	// akPublic is the TPM's attestation key (vtpm.AKPublic), read before
	// the VM connects: the key a verifier pins for this VM
	// (vtpm.AKDigest).
	akPublic []byte
	stop     func() error
}

// startVTPM starts a new vTPM for a VM whose state is in dir: the state
// of an earlier one there is removed first. It dies with this process.
func startVTPM(ctx context.Context, dir string) (*vTPM, error) {
	return startVTPMIn(ctx, filepath.Join(dir, tpmDirName), false)
}

// startVTPMIn starts a new vTPM in tpmDir, removing what was there.
// Detached, it outlives this process and follows tpmDir when it is
// renamed (a reused VM's directory moves to the pool and to the next
// sandbox); adoptVTPM finds it again.
func startVTPMIn(ctx context.Context, tpmDir string, detached bool) (_ *vTPM, retErr error) {
	if err := os.RemoveAll(tpmDir); err != nil {
		return nil, fmt.Errorf("start vTPM: %w", err)
	}
	opts := []swtpm.Option{swtpm.WithCommandSocket()}
	if detached {
		opts = append(opts, swtpm.Detached())
	}
	s, err := swtpm.StartSwtpm(ctx, tpmDir, opts...)
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
	if err := os.WriteFile(filepath.Join(filepath.Dir(tpmDir), VTPMAKName), ak, 0o644); err != nil {
		return nil, fmt.Errorf("start vTPM: %w", err)
	}
	if detached {
		if err := os.WriteFile(filepath.Join(tpmDir, akFileName), ak, 0o600); err != nil {
			return nil, fmt.Errorf("start vTPM: %w", err)
		}
	}
	return &vTPM{dir: tpmDir, akPublic: ak, stop: s.Stop}, nil
}

// adoptVTPM takes over the detached vTPM running in tpmDir, which
// another process started.
func adoptVTPM(tpmDir string) (*vTPM, error) {
	pid := swtpm.ProcessOf(tpmDir)
	if pid <= 0 {
		return nil, fmt.Errorf("adopt vTPM in %s: no emulator runs there: %w", tpmDir, errdefs.ErrNotFound)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("adopt vTPM: swtpm pid %d: %w", pid, err)
	}
	pidfd := os.NewFile(uintptr(fd), "pidfd")
	// Checked again now that the pidfd pins the process.
	if swtpm.ProcessOf(tpmDir) != pid {
		pidfd.Close()
		return nil, fmt.Errorf("adopt vTPM in %s: the emulator went: %w", tpmDir, errdefs.ErrNotFound)
	}
	ak, err := os.ReadFile(filepath.Join(tpmDir, akFileName))
	if err != nil {
		pidfd.Close()
		return nil, fmt.Errorf("adopt vTPM: %w", err)
	}
	return &vTPM{dir: tpmDir, akPublic: ak, stop: func() error {
		defer pidfd.Close()
		return killPidfd(pidfd, 5*time.Second)
	}}, nil
}

// killPidfd sends SIGKILL to the process of pidfd, which need not be a
// child, and waits up to wait for it to exit.
func killPidfd(pidfd *os.File, wait time.Duration) error {
	if err := unix.PidfdSendSignal(int(pidfd.Fd()), unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill: %w", err)
	}
	fds := []unix.PollFd{{Fd: int32(pidfd.Fd()), Events: unix.POLLIN}}
	deadline := time.Now().Add(wait)
	for {
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		if n > 0 {
			return nil
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("wait for exit: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still running %v after SIGKILL", wait)
		}
	}
}

// Stop ends the emulator. Its state stays in its directory.
func (t *vTPM) Stop() error {
	return t.stop()
}

// VTPMAKName is the file in a VM's state directory that holds its vTPM's
// attestation key (TPMT_PUBLIC, vtpm.AKPublic), written before the VM
// starts: vtpm.AKDigest of it is what a key broker's policy trusts
// (trusted_aks).
const VTPMAKName = "tpm-ak.pub"

// device is how the VM attaches the vTPM.
func (t *vTPM) device() *vmm.TPM {
	return &vmm.TPM{Socket: filepath.Join(t.dir, swtpm.CmdSocketName), Port: agent.TPMPortName}
}

// tpmParam is the guest kernel parameter that points the guest's monitor
// at the vTPM's port.
const tpmParam = agent.TPMParam + "=" + agent.TPMPortName
