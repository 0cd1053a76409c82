package vport

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestFind(t *testing.T) {
	sys := t.TempDir()
	port := func(dir, name string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(sys, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, dir, "name"), []byte(name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	port("vport0p0", "org.qemu.guest_agent.0")
	port("vport0p1", "")

	// The agent's port appears later, as when virtio_console probes
	// asynchronously.
	go func() {
		time.Sleep(3 * pollInterval)
		port("vport0p2", Name)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := Find(ctx, sys, Name)
	if err != nil {
		t.Fatal(err)
	}
	if got != "/dev/vport0p2" {
		t.Fatalf("Find = %q, want /dev/vport0p2", got)
	}
}

func TestFindTimesOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*pollInterval)
	defer cancel()
	// A missing class directory means the driver is not loaded yet: wait.
	_, err := Find(ctx, filepath.Join(t.TempDir(), "absent"), Name)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Find = %v, want deadline exceeded", err)
	}
}

// socketpair returns the guest and host ends of a connected stream.
func socketpair(t *testing.T) (guest, host *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	guest, host = os.NewFile(uintptr(fds[0]), "guest"), os.NewFile(uintptr(fds[1]), "host")
	t.Cleanup(func() { guest.Close(); host.Close() })
	return guest, host
}

func TestPollHUP(t *testing.T) {
	guest, host := socketpair(t)
	away, err := pollHUP(guest)
	if err != nil || away {
		t.Fatalf("pollHUP with peer open = %v, %v; want false", away, err)
	}
	host.Close()
	away, err = pollHUP(guest)
	if err != nil || !away {
		t.Fatalf("pollHUP with peer closed = %v, %v; want true", away, err)
	}
}

func acceptAsync(l *Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

func TestListenerServesOneConnectionAtATime(t *testing.T) {
	guests := make(chan *os.File, 2)
	hosts := make([]*os.File, 2)
	for i := range hosts {
		g, h := socketpair(t)
		guests <- g
		hosts[i] = h
	}
	var opens atomic.Int32
	l := newListener("test", func() (*os.File, error) {
		opens.Add(1)
		return <-guests, nil
	}, pollHUP)
	defer l.Close()

	c1, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hosts[0].Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c1, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if _, err := c1.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(hosts[0], buf); err != nil || string(buf) != "pong" {
		t.Fatalf("host read %q, %v", buf, err)
	}

	next := acceptAsync(l)
	select {
	case <-next:
		t.Fatal("Accept returned while the previous connection is open")
	case <-time.After(2 * minConnLife):
	}
	if n := opens.Load(); n != 1 {
		t.Fatalf("port opened %d times while a connection is live", n)
	}

	// The host goes away: the guest reads EOF and the server closes.
	hosts[0].Close()
	if _, err := c1.Read(buf); err != io.EOF {
		t.Fatalf("read after host close = %v, want EOF", err)
	}
	c1.Close()
	select {
	case c2, ok := <-next:
		if !ok {
			t.Fatal("Accept failed after reconnect")
		}
		defer c2.Close()
		if _, err := c2.Write([]byte("again")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 5)
		if _, err := io.ReadFull(hosts[1], b); err != nil || string(b) != "again" {
			t.Fatalf("host read %q, %v", b, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not reopen the port")
	}
}

func TestListenerWaitsForHost(t *testing.T) {
	g, _ := socketpair(t)
	var connected atomic.Bool
	var polls atomic.Int32
	l := newListener("test", func() (*os.File, error) { return g, nil }, func(*os.File) (bool, error) {
		polls.Add(1)
		return !connected.Load(), nil
	})
	defer l.Close()

	got := acceptAsync(l)
	select {
	case <-got:
		t.Fatal("Accept returned while the host is away")
	case <-time.After(4 * hostWaitInterval):
	}
	if polls.Load() < 2 {
		t.Fatalf("polled %d times while waiting, want repeated polls", polls.Load())
	}
	connected.Store(true)
	select {
	case c, ok := <-got:
		if !ok {
			t.Fatal("Accept failed")
		}
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return once the host connected")
	}
}

func TestListenerRetriesOpen(t *testing.T) {
	g, _ := socketpair(t)
	var tries atomic.Int32
	l := newListener("test", func() (*os.File, error) {
		if tries.Add(1) < 3 {
			return nil, os.ErrNotExist
		}
		return g, nil
	}, pollHUP)
	defer l.Close()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := tries.Load(); n != 3 {
		t.Fatalf("opened %d times, want 3", n)
	}
}

func TestListenerClose(t *testing.T) {
	g, _ := socketpair(t)
	l := newListener("test", func() (*os.File, error) { return g, nil }, func(*os.File) (bool, error) { return true, nil })
	got := acceptAsync(l)
	time.Sleep(2 * hostWaitInterval)
	l.Close()
	select {
	case c, ok := <-got:
		if ok {
			c.Close()
			t.Fatal("Accept succeeded after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Accept")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
	}
}
