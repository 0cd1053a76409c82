package monitor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containerd/log"
	"github.com/google/go-tpm/tpm2/transport"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/attest/vtpm"
	"github.com/sccontainers/scc/guest-agent/initsys"
	"github.com/sccontainers/scc/guest-agent/vport"
)

// errTPMNotReplaceable refuses a clean of a guest whose TPM is a device
// (an SVSM vTPM, tpm-crb) rather than a port the host replaces: the next
// tenant would share the last one's TPM identity and init data PCR.
var errTPMNotReplaceable = errors.New("the guest's TPM is a device the host cannot replace")

// clean returns the guest to the state the first agent found it in,
// after the agent that asked for it ended (and with it every process of
// its PID namespace, its mounts and its IPC, UTS and network namespaces),
// and records the clean in the TPM. docs/monitor.md says what it
// guarantees and what it cannot.
func (s *supervisor) clean(ctx context.Context, req *cleanRequest) error {
	start := time.Now()
	steps := []struct {
		name string
		do   func() error
	}{
		{"end processes", func() error { return endStragglers("/proc") }},
		{"remove block devices", func() error { return removeBlockDevices("/sys/block") }},
		{"remove cgroups", func() error { return removeCgroups(filepath.Join(initsys.CgroupRoot, sandboxCgroup)) }},
		// The host removes the ports the tenant's data went through (the
		// guest frees their buffers) and adds new ones, a new vTPM's
		// among them.
		{"wait for new ports", func() error { return waitReplaced(ctx, vport.SysClassDir, req.ports) }},
		{"wipe file systems", func() error { return s.base.wipe(ctx) }},
		{"reset binfmt_misc", clearBinfmt},
		{"reset tracing", resetTracing},
		{"clear keyrings", clearKeyrings},
		{"restore sysctls", func() error { return s.base.restoreSysctls(ctx) }},
		{"check mounts", s.base.checkMounts},
		{"free memory", dropCaches},
		{"check initramfs", s.checkRoot},
		{"record clean", func() error { return s.record(ctx, req.nonce) }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
	}
	log.G(ctx).WithField("generation", s.meter.currentGeneration()).WithField("duration", time.Since(start)).Info("guest clean")
	return nil
}

// checkRoot fails when a file of the initramfs changed since boot.
func (s *supervisor) checkRoot() error {
	want, err := s.meter.bootDigest(vtpm.EventInitramfs)
	if err != nil {
		return err
	}
	got, err := treeDigest("/", initPath)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("initramfs tree digest %x, measured %x at boot", got, want)
	}
	return nil
}

// record moves to the next tenant's TPM, when the guest has one, and
// extends the clean event.
func (s *supervisor) record(ctx context.Context, nonce [32]byte) error {
	var next *guestTPM
	if s.tpm != nil {
		port, ok := initsys.CmdlineValue(s.cmdline, agentapi.TPMParam)
		if !ok {
			return errTPMNotReplaceable
		}
		s.tpm.Close()
		s.tpm = nil
		t, err := openPortTPM(ctx, port)
		if err != nil {
			return err
		}
		deny, err := tpmDevices(t.dev)
		if err != nil {
			t.Close()
			return err
		}
		if err := hideTPMNodes("/dev", t.path); err != nil {
			t.Close()
			return err
		}
		next, s.tpm, s.deny = t, t, deny
	}
	var tpm transport.TPM // a nil *guestTPM would not be a nil interface
	if next != nil {
		tpm = next
	}
	_, err := s.meter.cleaned(ctx, tpm, nonce)
	return err
}
