package agent

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/guest-agent/stream"
)

// Read lengths: a request with len 0 gets defaultReadLen; no response
// exceeds maxReadLen, well under ttrpc's 4 MiB message limit.
const (
	defaultReadLen = 32 << 10
	maxReadLen     = 1 << 20
)

// WriteStdin writes data to the process's stdin (or its terminal).
func (s *Service) WriteStdin(ctx context.Context, req *agentapi.WriteStdinRequest) (*agentapi.WriteStdinResponse, error) {
	_, p, err := s.process(req.GetContainerId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	st, _ := p.state()
	if err := allowed(processOps, p.what, st, opWriteStdin); err != nil {
		return nil, err
	}
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdin == nil {
		return nil, fmt.Errorf("stdin of %s is closed or not forwarded: %w", p.what, errdefs.ErrFailedPrecondition)
	}
	n, err := p.stdin.Write(req.GetData())
	if err != nil {
		return &agentapi.WriteStdinResponse{Len: uint32(n)}, fmt.Errorf("write stdin of %s: %w", p.what, err)
	}
	return &agentapi.WriteStdinResponse{Len: uint32(n)}, nil
}

// CloseStdin closes the process's stdin so it reads EOF. A terminal stays
// open (closing the master would hang up the process's session); further
// writes are refused.
func (s *Service) CloseStdin(ctx context.Context, req *agentapi.ProcessRequest) (*emptypb.Empty, error) {
	_, p, err := s.process(req.GetContainerId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdin != nil && p.stdin != p.pty {
		if err := p.stdin.Close(); err != nil {
			return nil, fmt.Errorf("close stdin of %s: %w", p.what, err)
		}
	}
	p.stdin = nil
	return &emptypb.Empty{}, nil
}

// ReadStdout returns the next bytes of the process's stdout.
func (s *Service) ReadStdout(ctx context.Context, req *agentapi.ReadOutputRequest) (*agentapi.ReadOutputResponse, error) {
	_, p, err := s.process(req.GetContainerId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	return readOutput(ctx, p.stdout, req.GetLen())
}

// ReadStderr returns the next bytes of the process's stderr.
func (s *Service) ReadStderr(ctx context.Context, req *agentapi.ReadOutputRequest) (*agentapi.ReadOutputResponse, error) {
	_, p, err := s.process(req.GetContainerId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	return readOutput(ctx, p.stderr, req.GetLen())
}

// readOutput blocks until b has bytes or ended. A response with eof set
// carries no data: every byte came in an earlier response.
func readOutput(ctx context.Context, b *stream.Buffer, n uint32) (*agentapi.ReadOutputResponse, error) {
	switch {
	case n == 0:
		n = defaultReadLen
	case n > maxReadLen:
		n = maxReadLen
	}
	data, eof, err := b.Read(ctx, int(n))
	if err != nil {
		return nil, err
	}
	return &agentapi.ReadOutputResponse{Data: data, Eof: eof}, nil
}

// ResizePty sets the window size of the process's terminal.
func (s *Service) ResizePty(ctx context.Context, req *agentapi.ResizePtyRequest) (*emptypb.Empty, error) {
	_, p, err := s.process(req.GetContainerId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	if req.GetWidth() > 0xffff || req.GetHeight() > 0xffff {
		return nil, invalid("window size %dx%d", req.GetWidth(), req.GetHeight())
	}
	if !p.terminal {
		return nil, fmt.Errorf("%s has no terminal: %w", p.what, errdefs.ErrFailedPrecondition)
	}
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.pty == nil {
		return nil, fmt.Errorf("terminal of %s is gone: %w", p.what, errdefs.ErrFailedPrecondition)
	}
	rc, err := p.pty.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("resize terminal of %s: %w", p.what, err)
	}
	ws := &unix.Winsize{Col: uint16(req.GetWidth()), Row: uint16(req.GetHeight())}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws) }); err != nil {
		return nil, fmt.Errorf("resize terminal of %s: %w", p.what, err)
	}
	if ierr != nil {
		return nil, fmt.Errorf("resize terminal of %s: %w", p.what, ierr)
	}
	return &emptypb.Empty{}, nil
}
