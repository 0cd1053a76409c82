package forward

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoServer answers every connection with "echo:" and what it read, once
// the client closed its side.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				c.Write(append([]byte("echo:"), b...))
			}()
		}
	}()
	return ln.Addr().String()
}

type pair struct {
	client *Client
	server *Server
	done   chan error
	mu     sync.Mutex
	ended  []map[string]TargetStats // StreamDone calls, guarded by mu
}

func newPair(t *testing.T, targets map[string]string) *pair {
	t.Helper()
	g, h := net.Pipe()
	p := &pair{done: make(chan error, 1)}
	p.server = &Server{Targets: targets, StreamDone: func(s map[string]TargetStats) {
		p.mu.Lock()
		p.ended = append(p.ended, s)
		p.mu.Unlock()
	}}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { p.done <- p.server.Serve(ctx, h) }()
	c, err := NewClient(g)
	if err != nil {
		t.Fatal(err)
	}
	p.client = c
	t.Cleanup(func() {
		c.Close()
		cancel()
		select {
		case err := <-p.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after the session ended")
		}
	})
	return p
}

func TestForwardCountsBytes(t *testing.T) {
	addr := echoServer(t)
	p := newPair(t, map[string]string{TargetRegistry: addr})
	ctx := context.Background()
	payload := bytes.Repeat([]byte("x"), 100000)
	for i := 0; i < 2; i++ {
		conn, err := p.client.Dial(ctx, TargetRegistry)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			conn.Write(payload)
			// A stream's Close is a half close: the answer still comes.
			conn.Close()
		}()
		got, err := io.ReadAll(conn)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if !bytes.Equal(got, append([]byte("echo:"), payload...)) {
			t.Fatalf("echo of %d bytes, want %d", len(got), len(payload)+5)
		}
	}
	want := TargetStats{Streams: 2, ToTarget: 2 * 100000, FromTarget: 2 * 100005}
	ended := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.ended)
	}
	deadline := time.Now().Add(5 * time.Second)
	for (p.server.Stats()[TargetRegistry] != want || ended() < 2) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := p.server.Stats()[TargetRegistry]; got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ended) != 2 {
		t.Errorf("StreamDone called %d times, want 2", len(p.ended))
	}
}

func TestForwardRefuses(t *testing.T) {
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	p := newPair(t, map[string]string{TargetKBS: closed})
	ctx := context.Background()
	for _, tc := range []struct {
		target string
		want   string
	}{
		{"registry", "unknown target"},
		{TargetKBS, "unreachable"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			conn, err := p.client.Dial(ctx, tc.target)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial(%q) = %v, %v; want ErrRefused saying %q", tc.target, conn, err, tc.want)
			}
		})
	}
	// The guest names targets; an address is not a name.
	if _, err := p.client.Dial(ctx, closed); err == nil || errors.Is(err, ErrRefused) {
		t.Errorf("Dial(address) = %v, want a refusal before anything is sent", err)
	}
	if got := p.server.Stats(); len(got) != 1 || got[TargetKBS].Refused != 1 || got[TargetKBS].Streams != 0 {
		t.Errorf("stats %+v, want one refused kbs stream and nothing else", got)
	}
}

func TestValidTarget(t *testing.T) {
	for name, want := range map[string]bool{
		"registry": true, "kbs": true, "a-1": true,
		"": false, "Registry": false, "127.0.0.1:5000": false, "a b": false, "a\nb": false,
		strings.Repeat("a", 33): false,
	} {
		if got := ValidTarget(name); got != want {
			t.Errorf("ValidTarget(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestServeEndsWithContext(t *testing.T) {
	g, h := net.Pipe()
	defer g.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{}).Serve(ctx, h) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}
