package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sccontainers/scc/guest-agent/pull"
	"golang.org/x/sys/unix"
)

// Log field names.
const (
	fieldContainer = "container"
	fieldExec      = "exec"
)

// container is one libcontainer container and its processes.
type container struct {
	id          string
	lc          *libcontainer.Container
	spec        *specs.Spec // guarded by mu
	rootfsMount string      // mount point the agent made for the rootfs, or ""
	image       *pull.Image // the image pulled for the container, or nil

	mu      sync.Mutex
	status  status              // guarded by mu
	started time.Time           // when the init exec'd the user's program, guarded by mu
	init    *process            // set once at creation
	execs   map[string]*process // by exec id, guarded by mu
}

func (c *container) what() string { return fmt.Sprintf("container %s", c.id) }

// state returns c's status.
func (c *container) state() status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// transition applies e to c's status.
func (c *container) transition(e event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	next, err := containerLifecycle.next(c.what(), c.status, e)
	if err != nil {
		return err
	}
	c.status = next
	return nil
}

// allow checks that o is allowed in c's current status.
func (c *container) allow(o op) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return allowed(containerOps, c.what(), c.status, o)
}

// process returns the init process (execID "") or an exec process.
func (c *container) process(execID string) (*process, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.execs[execID]
	if !ok {
		return nil, fmt.Errorf("exec %q in container %q: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

// privatePID reports whether c has its own PID namespace, in which case the
// kernel kills every process in it when its init exits.
func (c *container) privatePID() bool {
	cfg := c.lc.Config()
	return cfg.Namespaces.IsPrivate(configs.NEWPID)
}

// initExited runs once c's init process exited.
func (c *container) initExited(ctx context.Context) {
	if err := c.transition(eventExit); err != nil {
		log.G(ctx).WithError(err).Warn("init exit")
	}
	// In a shared PID namespace the other processes outlive init; a
	// stopped container must have none left, as with containerd's runc
	// shim.
	if !c.privatePID() {
		if err := c.signalAll(unix.SIGKILL); err != nil {
			log.G(ctx).WithError(err).Warn("kill processes left after init exit")
		}
	}
}

// signalAll sends sig to every process in c's cgroup.
func (c *container) signalAll(sig unix.Signal) error {
	pids, err := c.lc.Processes()
	if err != nil {
		return fmt.Errorf("list processes of %s: %w", c.what(), err)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH {
			return fmt.Errorf("signal pid %d of %s: %w", pid, c.what(), err)
		}
	}
	return nil
}

// processes returns the init and exec processes.
func (c *container) processes() []*process {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := []*process{c.init}
	for _, p := range c.execs {
		ps = append(ps, p)
	}
	return ps
}
