package monitor

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/exeseal"
	"golang.org/x/sys/unix"

	"github.com/sccontainers/scc/guest-agent/initsys"
)

// The agent's cgroups, below initsys.CgroupRoot. The device filter sits on
// guestCgroup; the agent's cgroup namespace is rooted at sandboxCgroup,
// one level down, so that the agent can neither see nor detach it. The
// agent runs in agentCgroup and puts its containers below sandboxCgroup.
const (
	guestCgroup   = "guest"
	sandboxCgroup = guestCgroup + "/sandbox"
	agentCgroup   = sandboxCgroup + "/agent"
)

// AgentArg is the first argument that makes the executable the agent
// rather than the monitor.
const AgentArg = "agent"

// Descriptors the agent starts with besides stdio: its end of its
// connection to the monitor, and the sealed copy of the executable it
// runs from, which it closes.
const (
	AgentConnFD = 3
	AgentExeFD  = 4
)

// droppedCaps are taken out of the agent's capability bounding set, and
// so out of every container's: with them a root process could replace
// the kernel (kexec), load kernel code, or reach devices and memory
// through raw I/O, past everything that keeps it from the TPM.
var droppedCaps = []uintptr{unix.CAP_SYS_BOOT, unix.CAP_SYS_MODULE, unix.CAP_SYS_RAWIO}

// startAgent starts the agent confined as the package documentation
// describes and returns it with the monitor's end of its connection.
// deny are the device rules that keep it from the TPM. With want set, the
// executable the agent runs from must hash to it.
func startAgent(ctx context.Context, deny []*devices.Rule, want *[32]byte) (*os.Process, *os.File, error) {
	root := initsys.CgroupRoot
	for _, d := range []string{guestCgroup, sandboxCgroup, agentCgroup} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil && !os.IsExist(err) {
			return nil, nil, fmt.Errorf("start agent: %w", err)
		}
	}
	if err := initsys.EnableControllers(ctx, filepath.Join(root, guestCgroup)); err != nil {
		return nil, nil, fmt.Errorf("start agent: %w", err)
	}
	if err := denyDevices(filepath.Join(root, guestCgroup), deny); err != nil {
		return nil, nil, fmt.Errorf("start agent: %w", err)
	}

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("start agent: socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "monitor")
	theirs := os.NewFile(uintptr(fds[1]), "agent")
	defer theirs.Close()

	// A new cgroup namespace is rooted at the cgroup of the process that
	// makes it, not at the child's: the monitor steps into the sandbox
	// cgroup to start the agent and steps out again.
	if err := joinCgroup(sandboxCgroup, os.Getpid()); err != nil {
		mine.Close()
		return nil, nil, fmt.Errorf("start agent: %w", err)
	}
	proc, err := spawnAgent(theirs, want)
	if jerr := joinCgroup("", os.Getpid()); jerr != nil && err == nil {
		err = jerr
	}
	if err == nil {
		err = joinCgroup(agentCgroup, proc.Pid)
	}
	if err == nil {
		// Only now is the sandbox cgroup free of processes, as a cgroup
		// that hands controllers to its children must be, once the thread
		// that forked the agent has exited: a thread that is exiting is
		// not moved with its process and stays in the cgroup until it is
		// gone.
		err = waitNoThreads(ctx, filepath.Join(root, sandboxCgroup))
	}
	if err == nil {
		err = initsys.EnableControllers(ctx, filepath.Join(root, sandboxCgroup))
	}
	if err != nil {
		if proc != nil {
			proc.Kill()
			proc.Wait()
		}
		mine.Close()
		return nil, nil, fmt.Errorf("start agent: %w", err)
	}
	return proc, mine, nil
}

// agentNamespaces are the namespaces the agent gets of its own. Mount,
// PID and cgroup ones keep it from the monitor; IPC, UTS and network ones
// hold what its tenant changes in the guest's System V IPC objects,
// hostname, interfaces, routes, firewall rules and network sysctls, all
// of which end with the agent's last process (giveLinks hands it the
// guest's interfaces).
const agentNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWCGROUP |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWNET

// spawnAgent runs this executable as the agent in namespaces of its own
// (agentNamespaces), with conn as its fd 3.
//
// The capability bounding set is per thread and inherited by the
// children a thread forks: spawnAgent drops droppedCaps on a thread of
// its own, forks the agent from it, and lets Go retire the thread (a
// goroutine that ends locked to its thread takes the thread with it).
//
// The agent runs from a sealed in-memory copy of the executable:
// libcontainer starts every container's init from /proc/self/exe, and
// copies the binary for each one (so that a container cannot overwrite
// it) unless the running executable already is such a copy. One copy
// here saves one per container.
func spawnAgent(conn *os.File, want *[32]byte) (*os.Process, error) {
	exe, err := sealedSelf()
	if err != nil {
		return nil, fmt.Errorf("spawn agent: %w", err)
	}
	defer exe.Close()
	if want != nil {
		if err := checkDigest(exe, *want); err != nil {
			return nil, fmt.Errorf("spawn agent: %w", err)
		}
	}
	type result struct {
		p   *os.Process
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		for _, c := range droppedCaps {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
				done <- result{err: fmt.Errorf("drop capability %d: %w", c, err)}
				return
			}
		}
		p, err := os.StartProcess(fmt.Sprintf("/proc/self/fd/%d", AgentExeFD), []string{"scc-agent", AgentArg}, &os.ProcAttr{
			Env:   os.Environ(),
			Files: []*os.File{os.Stdin, os.Stdout, os.Stderr, conn, exe},
			Sys: &syscall.SysProcAttr{
				// No Pdeathsig: it fires when the forking thread ends,
				// which this one does at once.
				Cloneflags: agentNamespaces,
			},
		})
		done <- result{p, err}
	}()
	r := <-done
	if r.err != nil {
		return nil, fmt.Errorf("spawn agent: %w", r.err)
	}
	return r.p, nil
}

// sealedSelf returns a sealed in-memory copy of the running executable.
func sealedSelf() (*os.File, error) {
	f, err := os.Open(selfExe)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	sealed, err := exeseal.CloneBinary(f, fi.Size(), "scc-agent", os.TempDir())
	if err != nil {
		return nil, fmt.Errorf("seal executable: %w", err)
	}
	return sealed, nil
}

// threadsGoneTimeout bounds waitNoThreads.
const threadsGoneTimeout = 5 * time.Second

// waitNoThreads waits until the cgroup at dir holds no thread.
func waitNoThreads(ctx context.Context, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, threadsGoneTimeout)
	defer cancel()
	for {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.threads"))
		if err != nil {
			return fmt.Errorf("wait for cgroup %s to empty: %w", dir, err)
		}
		threads := strings.Fields(string(b))
		if len(threads) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cgroup %s still holds threads %v: %w", dir, threads, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// joinCgroup moves process pid into the cgroup at rel below the root
// ("" for the root itself).
func joinCgroup(rel string, pid int) error {
	procs := filepath.Join(initsys.CgroupRoot, rel, "cgroup.procs")
	if err := os.WriteFile(procs, []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("move %d to cgroup /%s: %w", pid, rel, err)
	}
	return nil
}

// errAgentChanged is an agent executable whose digest is not the one
// measured at boot.
var errAgentChanged = errors.New("the agent executable differs from the one measured at boot")

// checkDigest hashes the whole of f, from its start, and compares it with
// want.
func checkDigest(f *os.File, want [32]byte) error {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, math.MaxInt64)); err != nil {
		return fmt.Errorf("hash agent executable: %w", err)
	}
	if got := [32]byte(h.Sum(nil)); subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return fmt.Errorf("%w: %x, measured %x", errAgentChanged, got, want)
	}
	return nil
}
