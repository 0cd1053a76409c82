// Package reaper reaps orphaned children of the guest's PID 1.
//
// PID 1 inherits every orphan in the guest and must reap them, but it must
// not steal the exit status of a child that another goroutine is about to
// wait for: libcontainer waits for its "init" helpers by pid, and the agent
// waits for each container process to learn its exit status. A blanket
// wait4(-1) in a SIGCHLD handler races with both. The Reaper therefore
// reaps only zombies that nobody claimed, and never while a spawn is in
// progress (the pids libcontainer forks and waits for internally are not
// known to the agent until the spawn returns).
package reaper

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// Reaper reaps unclaimed zombie children. The zero value is not usable; use
// New.
type Reaper struct {
	// spawning is held shared by every spawn (Hold) and exclusively by a
	// reaping pass, so no pass runs while a child might exist whose pid
	// only libcontainer knows.
	spawning sync.RWMutex

	procDir string // "/proc" but for tests

	mu      sync.Mutex
	claimed map[int]int // pid -> number of claims, guarded by mu
}

// New returns a Reaper that scans /proc.
func New() *Reaper {
	return &Reaper{procDir: "/proc", claimed: make(map[int]int)}
}

// Hold blocks reaping until release is called. Callers hold it around any
// operation that forks children and waits for them by pid (libcontainer's
// Start, Destroy with hooks), and must claim the pids they keep before
// releasing it.
func (r *Reaper) Hold() (release func()) {
	r.spawning.RLock()
	var once sync.Once
	return func() { once.Do(r.spawning.RUnlock) }
}

// Claim marks pid as waited for by its owner: the Reaper leaves its zombie
// alone until release is called, which the owner must do once its own wait
// returned.
func (r *Reaper) Claim(pid int) (release func()) {
	r.mu.Lock()
	r.claimed[pid]++
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.claimed[pid]--; r.claimed[pid] <= 0 {
				delete(r.claimed, pid)
			}
		})
	}
}

func (r *Reaper) isClaimed(pid int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.claimed[pid] > 0
}

// Run reaps on every SIGCHLD until ctx is done. It makes the process a child
// subreaper first, so orphans are reparented to it even when it is not PID 1
// (in tests on a host).
func (r *Reaper) Run(ctx context.Context) error {
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", err)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	for {
		// Reap before waiting, for children that died before Notify.
		for _, z := range r.Reap() {
			log.G(ctx).WithField("pid", z.Pid).WithField("status", z.Status).Debug("reaped orphan")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-sigs:
		}
	}
}

// Reaped is one zombie collected by Reap.
type Reaped struct {
	Pid    int
	Status int // exit code, or 128+signal
}

// Reap collects every zombie child that is not claimed and returns them. It
// waits for any Hold in progress to be released.
func (r *Reaper) Reap() []Reaped {
	r.spawning.Lock()
	defer r.spawning.Unlock()

	var out []Reaped
	self := os.Getpid()
	for _, pid := range r.zombieChildren(self) {
		if r.isClaimed(pid) {
			continue
		}
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil || got != pid {
			continue
		}
		out = append(out, Reaped{Pid: pid, Status: exitCode(ws)})
	}
	return out
}

// zombieChildren lists the zombies whose parent is ppid. Waiting on each
// known pid, rather than on any child, is what keeps claimed statuses safe.
func (r *Reaper) zombieChildren(ppid int) []int {
	entries, err := os.ReadDir(r.procDir)
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(r.procDir, e.Name(), "stat"))
		if err != nil {
			continue
		}
		state, parent, err := parseStat(string(data))
		if err != nil {
			continue
		}
		if state == 'Z' && parent == ppid {
			pids = append(pids, pid)
		}
	}
	return pids
}

var errBadStat = errors.New("malformed /proc/<pid>/stat")

// parseStat returns the state and parent pid from the text of
// /proc/<pid>/stat. The command name may hold spaces and parentheses, so
// the fields are found after the last ')'.
func parseStat(s string) (state byte, ppid int, err error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, errBadStat
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0, errBadStat
	}
	ppid, err = strconv.Atoi(fields[1])
	if err != nil {
		return 0, 0, errBadStat
	}
	return fields[0][0], ppid, nil
}

func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
