package agent

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/log"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// execWait bounds how long StartContainer waits for the container's init
// to exec the user's program.
const execWait = 10 * time.Second

// StartContainer lets a created container's init run the user's program.
func (s *Service) StartContainer(ctx context.Context, req *agentapi.StartContainerRequest) (*agentapi.StartResponse, error) {
	c, err := s.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	// c.mu is held across Exec so that a concurrent start, pause or delete
	// sees either created or running, never a half-started container; and
	// a signal waits until the user's program runs.
	c.mu.Lock()
	defer c.mu.Unlock()
	next, err := containerLifecycle.next(c.what(), c.status, eventStart)
	if err != nil {
		return nil, err
	}
	_, pid := c.init.state()
	initExe, _ := exeOf(pid)
	if err := c.lc.Exec(); err != nil {
		return nil, fmt.Errorf("start container %s: %w", c.id, err)
	}
	c.status = next
	if err := c.init.start(); err != nil {
		return nil, err
	}
	// libcontainer's Exec returns once it let the init go, before the init
	// execs the user's program. A signal sent in between reaches
	// libcontainer's init, which loses it when it is the init of the
	// container's PID namespace; under a slow (emulated) guest CPU the
	// host's next request, such as a stop, lands there. Return once the
	// program runs.
	if initExe != (fileID{}) {
		waitExec(ctx, pid, initExe)
	}
	c.started = time.Now()
	return &agentapi.StartResponse{Pid: uint32(pid)}, nil
}

// fileID identifies a file.
type fileID struct{ dev, ino uint64 }

// exeOf identifies the program process pid runs.
func exeOf(pid int) (fileID, error) {
	fi, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return fileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fmt.Errorf("stat of pid %d's program: no inode", pid)
	}
	return fileID{dev: st.Dev, ino: st.Ino}, nil
}

// waitExec waits until process pid no longer runs program old: it exec'd
// another, or exited. It gives up after execWait, or when ctx ends.
func waitExec(ctx context.Context, pid int, old fileID) {
	deadline := time.Now().Add(execWait)
	for delay := time.Millisecond; ; delay = min(2*delay, 20*time.Millisecond) {
		exe, err := exeOf(pid)
		if err != nil || exe != old {
			return
		}
		if time.Now().After(deadline) {
			log.G(ctx).WithField("pid", pid).Warn("container init has not exec'd its program yet")
			return
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
	}
}
