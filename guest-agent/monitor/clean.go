package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/google/go-tpm/tpm2/transport"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/attest/vtpm"
	"github.com/sccontainers/scc/guest-agent/initsys"
	"github.com/sccontainers/scc/guest-agent/vport"
)

// CleanArg is the first argument that makes the executable the monitor's
// cleaner (CleanMain).
const CleanArg = "clean"

// cleanWait bounds a cleaner's run.
const cleanWait = 2 * time.Minute

// errTPMNotReplaceable refuses a clean of a guest whose TPM is a device
// (an SVSM vTPM, tpm-crb) rather than a port the host replaces: the next
// tenant would share the last one's TPM identity and init data PCR.
var errTPMNotReplaceable = errors.New("the guest's TPM is a device the host cannot replace")

// cleanJob is what the monitor hands its cleaner.
type cleanJob struct {
	// Baseline is the guest as the first agent found it (baseline, as
	// JSON).
	Baseline json.RawMessage
	// Ports are the virtio-serial ports the host must replace, by name,
	// with their sysfs inodes when the clean was asked for.
	Ports map[string]uint64
	// Initramfs is the initramfs tree digest measured at boot.
	Initramfs [32]byte
}

// clean returns the guest to the state the first agent found it in,
// after the agent that asked for it ended (and with it every process of
// its PID namespace, its mounts and its IPC, UTS and network namespaces),
// and records the clean in the TPM. docs/monitor.md says what it
// guarantees and what it cannot.
//
// The work that reads what the tenant left (file names, sysctl values,
// processes) runs in a cleaner process of its own, whose memory the
// kernel frees, and so zeroes, when it exits: the monitor, which lives
// on, never holds any of it.
func (s *supervisor) clean(ctx context.Context, req *cleanRequest) error {
	start := time.Now()
	initramfs, err := s.meter.bootDigest(vtpm.EventInitramfs)
	if err != nil {
		return err
	}
	job, err := json.Marshal(cleanJob{Baseline: s.base, Ports: req.ports, Initramfs: initramfs})
	if err != nil {
		return err
	}
	if err := runCleaner(ctx, job); err != nil {
		return err
	}
	reapAll() // processes the cleaner ended, which PID 1 inherited
	if err := dropCaches(); err != nil {
		return err
	}
	if err := s.record(ctx, req.nonce); err != nil {
		return fmt.Errorf("record clean: %w", err)
	}
	log.G(ctx).WithField("generation", s.meter.currentGeneration()).WithField("duration", time.Since(start)).Info("guest clean")
	return nil
}

// runCleaner runs this executable as the cleaner, with job on its
// standard input, and waits for it. Its output goes to the console.
func runCleaner(ctx context.Context, job []byte) error {
	ctx, cancel := context.WithTimeout(ctx, cleanWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, selfExe, CleanArg)
	cmd.Args[0] = "scc-clean"
	cmd.Stdin = bytes.NewReader(job)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cleaner: %w", err)
	}
	return nil
}

// CleanMain runs the monitor's cleaner (see clean) and exits: 0 once the
// guest is clean. It runs only as the child of an scc guest's monitor.
func CleanMain() {
	ctx := context.Background()
	b, _ := os.ReadFile(cmdlineFile)
	initsys.ConfigureLogging(string(b))
	if err := startedByMonitor(); err != nil {
		fmt.Fprintln(os.Stderr, "scc-clean:", err)
		os.Exit(2)
	}
	if err := runClean(ctx, os.Stdin); err != nil {
		log.G(ctx).WithError(err).Error("clean failed")
		os.Exit(1)
	}
	os.Exit(0)
}

// startedByMonitor fails unless the parent is PID 1 running this same
// executable: the cleaner removes files everywhere.
func startedByMonitor() error {
	if os.Getppid() != 1 {
		return errors.New("the cleaner runs only as started by the guest's monitor")
	}
	var self, init syscall.Stat_t
	if err := syscall.Stat(selfExe, &self); err != nil {
		return err
	}
	if err := syscall.Stat("/proc/1/exe", &init); err != nil {
		return err
	}
	if self.Dev != init.Dev || self.Ino != init.Ino {
		return errors.New("PID 1 is not the guest's monitor")
	}
	return nil
}

// runClean does the clean's work that reads what the tenant left.
func runClean(ctx context.Context, in io.Reader) error {
	var job cleanJob
	if err := json.NewDecoder(in).Decode(&job); err != nil {
		return fmt.Errorf("read clean job: %w", err)
	}
	var base baseline
	if err := json.Unmarshal(job.Baseline, &base); err != nil {
		return fmt.Errorf("read baseline: %w", err)
	}
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
		{"wait for new ports", func() error { return waitReplaced(ctx, vport.SysClassDir, job.Ports) }},
		{"wipe file systems", func() error { return base.wipe(ctx) }},
		{"reset binfmt_misc", clearBinfmt},
		{"reset tracing", resetTracing},
		{"clear keyrings", clearKeyrings},
		{"restore sysctls", func() error { return base.restoreSysctls(ctx) }},
		{"check mounts", base.checkMounts},
		{"check initramfs", func() error { return checkRoot(job.Initramfs) }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
	}
	return nil
}

// checkRoot fails when a file of the initramfs changed since boot.
func checkRoot(want [32]byte) error {
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
	var tpm transport.TPM // a nil *guestTPM would not be a nil interface
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
		s.tpm, s.deny, tpm = t, deny, t
	}
	_, err := s.meter.cleaned(ctx, tpm, nonce)
	return err
}
