package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"

	"github.com/containerd/errdefs"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// TestPortForward forwards a connection to a local echo server through
// the agent's port RPCs, with a half close, as the shim does.
func TestPortForward(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c) // until the host's half close
		c.Write(append([]byte("echo:"), b...))
	}()
	ctx := context.Background()
	s := New(Options{})
	port := uint32(ln.Addr().(*net.TCPAddr).Port)

	d, err := s.DialPort(ctx, &agentapi.DialPortRequest{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WritePort(ctx, &agentapi.WritePortRequest{Id: d.Id, Data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WritePort(ctx, &agentapi.WritePortRequest{Id: d.Id, CloseWrite: true}); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for {
		r, err := s.ReadPort(ctx, &agentapi.ReadPortRequest{Id: d.Id, Len: 3})
		if err != nil {
			t.Fatal(err)
		}
		got.Write(r.Data)
		if r.Eof {
			break
		}
	}
	if got.String() != "echo:hello" {
		t.Errorf("read %q, want echo:hello", got.String())
	}
	if _, err := s.ClosePort(ctx, &agentapi.ClosePortRequest{Id: d.Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadPort(ctx, &agentapi.ReadPortRequest{Id: d.Id}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("read after close: %v, want not found", err)
	}
}

func TestDialPortRefused(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := New(Options{})
	for _, p := range []uint32{0, 70000} {
		if _, err := s.DialPort(context.Background(), &agentapi.DialPortRequest{Port: p}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("dial port %d: %v, want invalid argument", p, err)
		}
	}
	if _, err := s.DialPort(context.Background(), &agentapi.DialPortRequest{Port: uint32(port)}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("dial closed port %s: %v, want unavailable", strconv.Itoa(port), err)
	}
}
