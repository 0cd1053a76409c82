package shim

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/fifo"
	"google.golang.org/protobuf/types/known/emptypb"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// fakeStreams plays the agent's side of a process's stdio.
type fakeStreams struct {
	mu      sync.Mutex
	stdout  [][]byte // chunks ReadStdout returns, then EOF
	stderr  [][]byte
	stdin   bytes.Buffer
	closed  chan struct{}
	maxRead uint32
}

func (f *fakeStreams) next(q *[][]byte, req *agent.ReadOutputRequest) (*agent.ReadOutputResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Len > f.maxRead {
		f.maxRead = req.Len
	}
	if len(*q) == 0 {
		return &agent.ReadOutputResponse{Eof: true}, nil
	}
	d := (*q)[0]
	*q = (*q)[1:]
	return &agent.ReadOutputResponse{Data: d}, nil
}

func (f *fakeStreams) ReadStdout(_ context.Context, r *agent.ReadOutputRequest) (*agent.ReadOutputResponse, error) {
	return f.next(&f.stdout, r)
}

func (f *fakeStreams) ReadStderr(_ context.Context, r *agent.ReadOutputRequest) (*agent.ReadOutputResponse, error) {
	return f.next(&f.stderr, r)
}

func (f *fakeStreams) WriteStdin(_ context.Context, r *agent.WriteStdinRequest) (*agent.WriteStdinResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Accept at most 3 bytes per call, so the caller must loop.
	n := min(len(r.Data), 3)
	f.stdin.Write(r.Data[:n])
	return &agent.WriteStdinResponse{Len: uint32(n)}, nil
}

func (f *fakeStreams) CloseStdin(context.Context, *agent.ProcessRequest) (*emptypb.Empty, error) {
	close(f.closed)
	return &emptypb.Empty{}, nil
}

// openReader opens a FIFO's read end as containerd does before Create.
func openReader(t *testing.T, ctx context.Context, path string) io.ReadCloser {
	t.Helper()
	r, err := fifo.OpenFifo(ctx, path, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestIOForwarding(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := t.TempDir()
	s := stdio{
		stdin:  filepath.Join(dir, "stdin"),
		stdout: filepath.Join(dir, "stdout"),
		stderr: filepath.Join(dir, "stderr"),
	}
	outR := openReader(t, ctx, s.stdout)
	errR := openReader(t, ctx, s.stderr)
	in, err := fifo.OpenFifo(ctx, s.stdin, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
	if err != nil {
		t.Fatal(err)
	}

	f := &fakeStreams{
		stdout: [][]byte{[]byte("hello "), []byte("world")},
		stderr: [][]byte{[]byte("oops")},
		closed: make(chan struct{}),
	}
	p, err := openIO(ctx, f, "c", "", s)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()

	if _, err := in.Write([]byte("some input")); err != nil {
		t.Fatal(err)
	}
	in.Close() // EOF on stdin must close the process's stdin
	select {
	case <-f.closed:
	case <-ctx.Done():
		t.Fatal("stdin EOF did not reach the agent")
	}
	if got := f.stdin.String(); got != "some input" {
		t.Errorf("agent got stdin %q", got)
	}

	// The output streams end (EOF) once the agent reports EOF.
	out, _ := io.ReadAll(outR)
	errOut, _ := io.ReadAll(errR)
	if string(out) != "hello world" || string(errOut) != "oops" {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
	p.drain(time.Second)
	select {
	case <-p.done:
	default:
		t.Error("drain returned before the outputs finished")
	}
	if f.maxRead > readChunk {
		t.Errorf("asked for %d bytes at once, more than %d", f.maxRead, readChunk)
	}
}

func TestIOTerminalHasNoStderr(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := t.TempDir()
	s := stdio{stdout: filepath.Join(dir, "stdout"), stderr: filepath.Join(dir, "stderr"), terminal: true}
	outR := openReader(t, ctx, s.stdout)
	f := &fakeStreams{stdout: [][]byte{[]byte("tty")}, stderr: [][]byte{[]byte("never read")}, closed: make(chan struct{})}
	p, err := openIO(ctx, f, "c", "", s)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	out, _ := io.ReadAll(outR)
	if string(out) != "tty" {
		t.Errorf("stdout %q", out)
	}
	if len(f.stderr) != 1 {
		t.Error("stderr was read for a terminal process")
	}
}
