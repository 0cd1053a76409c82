package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"google.golang.org/protobuf/types/known/emptypb"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// readChunk is the most output one ReadStdout/ReadStderr call returns.
const readChunk = 64 << 10

// drainTimeout bounds how long an exit waits for the process's output to
// reach containerd; a process whose children keep stdout open must not
// hold back its exit forever.
const drainTimeout = 5 * time.Second

// stdio holds the paths of the FIFOs containerd created for a process.
type stdio struct {
	stdin, stdout, stderr string
	terminal              bool
}

func (s stdio) config() *agent.StdioConfig {
	return &agent.StdioConfig{
		Terminal: s.terminal,
		Stdin:    s.stdin != "",
		Stdout:   s.stdout != "",
		Stderr:   s.stderr != "" && !s.terminal,
	}
}

func (s stdio) validate() error {
	for _, p := range []string{s.stdin, s.stdout, s.stderr} {
		if p == "" {
			continue
		}
		u, err := url.Parse(p)
		if err == nil && u.Scheme != "" && u.Scheme != "fifo" {
			return fmt.Errorf("stdio %q: only FIFOs are supported: %w", p, errdefs.ErrNotImplemented)
		}
	}
	return nil
}

// streamClient is the part of the agent API that carries a process's stdio.
type streamClient interface {
	WriteStdin(context.Context, *agent.WriteStdinRequest) (*agent.WriteStdinResponse, error)
	CloseStdin(context.Context, *agent.ProcessRequest) (*emptypb.Empty, error)
	ReadStdout(context.Context, *agent.ReadOutputRequest) (*agent.ReadOutputResponse, error)
	ReadStderr(context.Context, *agent.ReadOutputRequest) (*agent.ReadOutputResponse, error)
}

// procIO forwards one process's stdio between containerd's FIFOs and the
// agent.
type procIO struct {
	client      streamClient
	containerID string
	execID      string

	stdin   io.ReadCloser
	closers []io.Closer
	outputs sync.WaitGroup
	done    chan struct{} // closed once every output reached EOF

	closeStdin sync.Once
	stdinDone  chan struct{} // closed when copyIn returns
}

// openIO opens the FIFOs and starts copying. It must be called before the
// process starts so that no output is lost.
func openIO(ctx context.Context, client streamClient, containerID, execID string, s stdio) (_ *procIO, retErr error) {
	p := &procIO{client: client, containerID: containerID, execID: execID, done: make(chan struct{}), stdinDone: make(chan struct{})}
	defer func() {
		if retErr != nil {
			p.close()
		}
	}()
	type output struct {
		path string
		read func(context.Context, *agent.ReadOutputRequest) (*agent.ReadOutputResponse, error)
	}
	outs := []output{{s.stdout, client.ReadStdout}}
	if !s.terminal {
		outs = append(outs, output{s.stderr, client.ReadStderr})
	}
	var writers []io.WriteCloser
	for _, o := range outs {
		if o.path == "" {
			continue
		}
		w, err := fifo.OpenFifo(ctx, o.path, syscall.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", o.path, err)
		}
		p.closers = append(p.closers, w)
		// Holding a read end keeps writes from failing with EPIPE when
		// the client goes away, as the runc shim does.
		r, err := fifo.OpenFifo(ctx, o.path, syscall.O_RDONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", o.path, err)
		}
		p.closers = append(p.closers, r)
		writers = append(writers, w)
	}
	if s.stdin != "" {
		// The client may open its end only after this request returns,
		// and the fifo package closes a pending open when its context
		// ends: the open must outlive the request.
		r, err := fifo.OpenFifo(context.WithoutCancel(ctx), s.stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", s.stdin, err)
		}
		p.stdin = r
	}

	i := 0
	for _, o := range outs {
		if o.path == "" {
			continue
		}
		w := writers[i]
		i++
		p.outputs.Add(1)
		go p.copyOut(o.read, w)
	}
	go func() {
		p.outputs.Wait()
		close(p.done)
	}()
	if p.stdin != nil {
		go p.copyIn()
	} else {
		close(p.stdinDone)
	}
	return p, nil
}

// copyOut reads one output stream from the agent until EOF.
func (p *procIO) copyOut(read func(context.Context, *agent.ReadOutputRequest) (*agent.ReadOutputResponse, error), w io.WriteCloser) {
	defer p.outputs.Done()
	// Closing the write end is what tells containerd the stream ended.
	defer w.Close()
	ctx := context.Background()
	req := &agent.ReadOutputRequest{ContainerId: p.containerID, ExecId: p.execID, Len: readChunk}
	for {
		resp, err := read(ctx, req)
		if err != nil {
			if !errors.Is(err, errdefs.ErrNotFound) {
				log.G(ctx).WithError(err).WithField("container", p.containerID).Debug("read process output")
			}
			return
		}
		if len(resp.Data) > 0 {
			if _, err := w.Write(resp.Data); err != nil {
				log.G(ctx).WithError(err).WithField("container", p.containerID).Warn("write process output")
			}
		}
		if resp.Eof {
			return
		}
	}
}

// copyIn forwards stdin until the FIFO reaches EOF or is closed, then
// closes the process's stdin.
func (p *procIO) copyIn() {
	defer close(p.stdinDone)
	ctx := context.Background()
	buf := make([]byte, 32<<10)
	for {
		n, err := p.stdin.Read(buf)
		if n > 0 {
			data := buf[:n]
			for len(data) > 0 {
				resp, werr := p.client.WriteStdin(ctx, &agent.WriteStdinRequest{ContainerId: p.containerID, ExecId: p.execID, Data: data})
				if werr != nil {
					log.G(ctx).WithError(werr).WithField("container", p.containerID).Debug("write stdin")
					p.sendCloseStdin()
					return
				}
				data = data[resp.Len:]
			}
		}
		if err != nil {
			p.sendCloseStdin()
			return
		}
	}
}

func (p *procIO) sendCloseStdin() {
	p.closeStdin.Do(func() {
		ctx := context.Background()
		if _, err := p.client.CloseStdin(ctx, &agent.ProcessRequest{ContainerId: p.containerID, ExecId: p.execID}); err != nil {
			log.G(ctx).WithError(err).WithField("container", p.containerID).Debug("close stdin")
		}
	})
}

// stdinFlushTimeout bounds how long CloseStdin lets the data still in the
// stdin FIFO reach the process before it closes the FIFO.
const stdinFlushTimeout = 2 * time.Second

// CloseStdin closes the process's stdin once what the client wrote has been
// forwarded: containerd closes its end of the FIFO before it asks, so the
// copy normally ends by itself at EOF; a writer that stays open is cut off
// after stdinFlushTimeout.
func (p *procIO) CloseStdin() {
	if p.stdin == nil {
		p.sendCloseStdin()
		return
	}
	select {
	case <-p.stdinDone:
	case <-time.After(stdinFlushTimeout):
		p.stdin.Close()
		<-p.stdinDone
	}
	p.sendCloseStdin()
}

// drain waits until the outputs are copied or the timeout passes.
func (p *procIO) drain(timeout time.Duration) {
	select {
	case <-p.done:
	case <-time.After(timeout):
		log.L.WithField("container", p.containerID).Warn("process output still open after exit; not waiting for it")
	}
}

func (p *procIO) close() {
	if p.stdin != nil {
		p.stdin.Close()
	}
	for _, c := range p.closers {
		c.Close()
	}
}
