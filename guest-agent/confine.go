package guestagent

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/guest-agent/initsys"
	"github.com/sccontainers/scc/guest-agent/vport"
)

// confine finishes, before the agent serves anything, the confinement the
// monitor started it in (its own mount, PID, cgroup, IPC, UTS and network
// namespaces):
//
//   - mounts stop propagating out of the agent's mount namespace;
//   - /proc becomes its PID namespace's, where the monitor is not,
//     /sys/fs/cgroup its cgroup namespace's, below the monitor's device
//     filter, and /dev/mqueue its IPC namespace's; the monitor's mounts
//     are detached, not covered, so that unmounting cannot uncover them;
//   - its loopback interface comes up;
//   - the TPM's device nodes are covered with /dev/null.
//
// The device filter, not the covering, is what stops the agent from
// opening the TPM: the covering keeps mistakes from reaching it.
func confine(cmdline string) error {
	if os.Getpid() != 1 {
		// Not in a PID namespace of its own: not started by the monitor,
		// and these mounts would be someone else's.
		return fmt.Errorf("confine: the agent runs only as started by the guest's monitor")
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("confine: make mounts private: %w", err)
	}
	for _, m := range []struct{ fstype, target, data string }{
		{"proc", "/proc", ""},
		{"cgroup2", initsys.CgroupRoot, "nsdelegate"},
		{"mqueue", "/dev/mqueue", ""},
	} {
		if err := unix.Unmount(m.target, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("confine: unmount %s: %w", m.target, err)
		}
		if err := unix.Mount(m.fstype, m.target, m.fstype, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, m.data); err != nil {
			return fmt.Errorf("confine: mount %s: %w", m.target, err)
		}
	}
	// The network namespace is new: its loopback starts down. The pod's
	// interfaces arrive from the monitor (giveLinks).
	if err := initsys.LoopbackUp(); err != nil {
		return fmt.Errorf("confine: %w", err)
	}
	nodes, _ := filepath.Glob("/dev/tpm*")
	if port, ok := initsys.CmdlineValue(cmdline, agentapi.TPMParam); ok {
		if p, err := vport.Lookup(vport.SysClassDir, port); err == nil && p != "" {
			nodes = append(nodes, p)
		}
	}
	for _, n := range nodes {
		if err := unix.Mount("/dev/null", n, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("confine: cover %s: %w", n, err)
		}
	}
	return nil
}
