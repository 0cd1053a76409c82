package agent

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// ExecProcess starts an additional process in a container's namespaces and
// cgroup.
func (s *Service) ExecProcess(ctx context.Context, req *agentapi.ExecProcessRequest) (*agentapi.StartResponse, error) {
	execID := req.GetExecId()
	if err := validateID("exec", execID); err != nil {
		return nil, err
	}
	spec, err := parseProcess(req.GetProcess())
	if err != nil {
		return nil, err
	}
	if err := checkTerminal(spec, req.GetStdio()); err != nil {
		return nil, err
	}
	c, err := s.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField(fieldContainer, c.id).WithField(fieldExec, execID))

	lp, err := newLibcontainerProcess(spec, false)
	if err != nil {
		return nil, err
	}
	cfg := c.lc.Config()
	uid, err := cfg.HostRootUID()
	if err != nil {
		return nil, invalid("root uid: %v", err)
	}
	gid, err := cfg.HostRootGID()
	if err != nil {
		return nil, invalid("root gid: %v", err)
	}
	p, err := newProcess(fmt.Sprintf("exec %s in container %s", execID, c.id), lp, req.GetStdio(), uid, gid)
	if err != nil {
		return nil, err
	}

	// Register p before starting it, so the exec id is taken and its
	// output can be read as soon as it runs.
	c.mu.Lock()
	if err := allowed(containerOps, c.what(), c.status, opExec); err != nil {
		c.mu.Unlock()
		p.release()
		return nil, err
	}
	if _, ok := c.execs[execID]; ok {
		c.mu.Unlock()
		p.release()
		return nil, fmt.Errorf("exec %q in container %q: %w", execID, c.id, errdefs.ErrAlreadyExists)
	}
	c.execs[execID] = p
	c.mu.Unlock()

	pid, err := s.startExec(ctx, c, p)
	if err != nil {
		c.mu.Lock()
		delete(c.execs, execID)
		c.mu.Unlock()
		p.release()
		return nil, err
	}
	return &agentapi.StartResponse{Pid: uint32(pid)}, nil
}

func (s *Service) startExec(ctx context.Context, c *container, p *process) (int, error) {
	hold := s.opts.Reaper.Hold()
	if err := c.lc.Start(p.lp); err != nil {
		hold()
		p.closeChildFiles()
		return 0, fmt.Errorf("start %s: %w", p.what, err)
	}
	pid, err := p.lp.Pid()
	if err != nil {
		hold()
		return 0, fmt.Errorf("pid of %s: %w", p.what, err)
	}
	claim := s.opts.Reaper.Claim(pid)
	hold()
	go p.wait(claim, func() {})

	if err := p.started(pid); err != nil {
		_ = p.lp.Signal(unix.SIGKILL)
		return 0, err
	}
	if err := p.start(); err != nil {
		return 0, err
	}
	log.G(ctx).WithField("pid", pid).Debug("exec started")
	return pid, nil
}
