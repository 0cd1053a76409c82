package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// fakeContainer registers a container "c" whose init has real stdio pipes
// but no process behind them: the test plays the process through lp's
// ends.
func fakeContainer(t *testing.T, s *Service, stdio *agentapi.StdioConfig) (*container, *libcontainer.Process) {
	t.Helper()
	lp := &libcontainer.Process{}
	c := &container{id: "c", status: statusRunning, execs: map[string]*process{}}
	p, err := newProcess(c.what(), lp, stdio, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.release)
	p.status = statusRunning
	c.init = p
	s.containers[c.id] = c
	return c, lp
}

func readToEOF(t *testing.T, read func(*agentapi.ReadOutputRequest) (*agentapi.ReadOutputResponse, error), n uint32) []byte {
	t.Helper()
	var out []byte
	for {
		resp, err := read(&agentapi.ReadOutputRequest{ContainerId: "c", Len: n})
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 && uint32(len(resp.GetData())) > n {
			t.Fatalf("got %d bytes, asked at most %d", len(resp.GetData()), n)
		}
		if resp.GetEof() {
			if len(resp.GetData()) != 0 {
				t.Fatal("eof response carries data")
			}
			return out
		}
		out = append(out, resp.GetData()...)
	}
}

func TestOutputIsKeptUntilRead(t *testing.T) {
	s := newTestService(t)
	ctx := context.Background()
	_, lp := fakeContainer(t, s, &agentapi.StdioConfig{Stdout: true, Stderr: true})

	want := bytes.Repeat([]byte("x"), 3*defaultReadLen+5)
	go func() {
		lp.Stdout.(*os.File).Write(want)
		lp.Stderr.(*os.File).Write([]byte("oops"))
		// The process exits: its ends close, after the last write.
		lp.Stdout.(*os.File).Close()
		lp.Stderr.(*os.File).Close()
	}()
	read := func(r *agentapi.ReadOutputRequest) (*agentapi.ReadOutputResponse, error) { return s.ReadStdout(ctx, r) }
	if got := readToEOF(t, read, 0); !bytes.Equal(got, want) {
		t.Fatalf("stdout: got %d bytes, want %d", len(got), len(want))
	}
	readErr := func(r *agentapi.ReadOutputRequest) (*agentapi.ReadOutputResponse, error) { return s.ReadStderr(ctx, r) }
	if got := readToEOF(t, readErr, 3); string(got) != "oops" {
		t.Fatalf("stderr = %q", got)
	}
}

func TestUnforwardedStreamsAreAtEOF(t *testing.T) {
	s := newTestService(t)
	ctx := context.Background()
	fakeContainer(t, s, &agentapi.StdioConfig{})
	for name, read := range map[string]func(*agentapi.ReadOutputRequest) (*agentapi.ReadOutputResponse, error){
		"stdout": func(r *agentapi.ReadOutputRequest) (*agentapi.ReadOutputResponse, error) { return s.ReadStdout(ctx, r) },
		"stderr": func(r *agentapi.ReadOutputRequest) (*agentapi.ReadOutputResponse, error) { return s.ReadStderr(ctx, r) },
	} {
		if got := readToEOF(t, read, 10); len(got) != 0 {
			t.Errorf("%s returned %q", name, got)
		}
	}
	if _, err := s.WriteStdin(ctx, &agentapi.WriteStdinRequest{ContainerId: "c", Data: []byte("x")}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("WriteStdin without stdin = %v, want failed precondition", err)
	}
}

func TestStdin(t *testing.T) {
	s := newTestService(t)
	ctx := context.Background()
	_, lp := fakeContainer(t, s, &agentapi.StdioConfig{Stdin: true})
	resp, err := s.WriteStdin(ctx, &agentapi.WriteStdinRequest{ContainerId: "c", Data: []byte("hello")})
	if err != nil || resp.GetLen() != 5 {
		t.Fatalf("WriteStdin = %v, %v", resp, err)
	}
	if _, err := s.CloseStdin(ctx, &agentapi.ProcessRequest{ContainerId: "c"}); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(lp.Stdin)
	if err != nil || string(got) != "hello" {
		t.Fatalf("process read %q, %v; want hello then EOF", got, err)
	}
	if _, err := s.WriteStdin(ctx, &agentapi.WriteStdinRequest{ContainerId: "c", Data: []byte("x")}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("WriteStdin after close = %v, want failed precondition", err)
	}
}

func TestResizeWithoutTerminal(t *testing.T) {
	s := newTestService(t)
	fakeContainer(t, s, &agentapi.StdioConfig{})
	_, err := s.ResizePty(context.Background(), &agentapi.ResizePtyRequest{ContainerId: "c", Width: 80, Height: 24})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("ResizePty = %v, want failed precondition", err)
	}
}

func TestWaitProcess(t *testing.T) {
	s := newTestService(t)
	c, _ := fakeContainer(t, s, &agentapi.StdioConfig{})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := s.WaitProcess(ctx, &agentapi.WaitProcessRequest{ContainerId: "c"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitProcess on a running process = %v, want deadline exceeded", err)
	}

	exitedAt := time.Unix(1700000000, 42)
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.init.exit(143, exitedAt)
	}()
	resp, err := s.WaitProcess(context.Background(), &agentapi.WaitProcessRequest{ContainerId: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetExitStatus() != 143 || !resp.GetExitedAt().AsTime().Equal(exitedAt) {
		t.Fatalf("WaitProcess = %d at %v, want 143 at %v", resp.GetExitStatus(), resp.GetExitedAt().AsTime(), exitedAt)
	}
	// A second exit report (a racing path) must not change the result.
	c.init.exit(0, time.Now())
	resp, err = s.WaitProcess(context.Background(), &agentapi.WaitProcessRequest{ContainerId: "c"})
	if err != nil || resp.GetExitStatus() != 143 {
		t.Fatalf("second WaitProcess = %v, %v", resp, err)
	}
	if _, err := s.SignalProcess(context.Background(), &agentapi.SignalProcessRequest{ContainerId: "c", ExecId: "", Signal: 15}); err == nil {
		t.Fatal("signal to an exited init succeeded")
	}
}
