package vport

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// hostWaitInterval is how often Accept polls for the host while it is
// disconnected. The port reports POLLHUP for as long as the host is away,
// so poll(2) cannot sleep until it comes back.
const hostWaitInterval = 50 * time.Millisecond

// minConnLife throttles reopening: a connection that ended faster than this
// (a host that connects and drops at once) does not make Accept spin.
const minConnLife = 100 * time.Millisecond

// Listener is a net.Listener over one virtio-serial port, for
// ttrpc.Server.Serve. The port is a single byte stream, so Listener hands
// out one connection at a time: Accept blocks until the previous
// connection is closed (ttrpc closes it when the host goes away), then
// reopens the port and waits for the host to connect again.
type Listener struct {
	addr Addr
	open func() (*os.File, error)
	// hostAway reports whether the host side of the port is disconnected.
	hostAway func(*os.File) (bool, error)

	closeOnce sync.Once
	closed    chan struct{}

	mu   sync.Mutex
	prev *conn // the last connection handed out, guarded by mu
}

var _ net.Listener = (*Listener)(nil)

// Listen returns a Listener on the character device at path (from Find).
// The device is opened by Accept.
func Listen(path string) *Listener {
	return newListener(path, func() (*os.File, error) {
		return os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	}, pollHUP)
}

func newListener(path string, open func() (*os.File, error), hostAway func(*os.File) (bool, error)) *Listener {
	return &Listener{
		addr:     Addr(path),
		open:     open,
		hostAway: hostAway,
		closed:   make(chan struct{}),
	}
}

// Accept waits for the previous connection to end, then opens the port and
// returns a connection once the host is connected.
func (l *Listener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
	}
	if prev := l.prev; prev != nil {
		select {
		case <-prev.done:
		case <-l.closed:
			return nil, net.ErrClosed
		}
		if life := time.Since(prev.opened); life < minConnLife {
			if err := l.sleep(minConnLife - life); err != nil {
				return nil, err
			}
		}
	}
	backoff := hostWaitInterval
	for {
		f, err := l.open()
		if err != nil {
			// The agent cannot do anything without its port: keep
			// trying rather than end Serve (and PID 1).
			log.L.WithError(err).WithField("port", string(l.addr)).Warn("open agent port")
			if err := l.sleep(backoff); err != nil {
				return nil, err
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		if err := l.waitHost(f); err != nil {
			f.Close()
			return nil, err
		}
		c := &conn{f: f, addr: l.addr, opened: time.Now(), done: make(chan struct{})}
		l.prev = c
		return c, nil
	}
}

// waitHost returns once the host side of f is connected, or net.ErrClosed
// if the Listener is closed meanwhile.
func (l *Listener) waitHost(f *os.File) error {
	for {
		away, err := l.hostAway(f)
		if err != nil {
			// Without poll we cannot tell; let the connection try.
			log.L.WithError(err).Warn("poll agent port")
			return nil
		}
		if !away {
			return nil
		}
		if err := l.sleep(hostWaitInterval); err != nil {
			return err
		}
	}
}

func (l *Listener) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-l.closed:
		return net.ErrClosed
	case <-t.C:
		return nil
	}
}

// WaitIdle returns once the last connection Accept handed out is closed
// (at once if there is none), or when ctx ends. Close the Listener first,
// or Accept may hand out another.
func (l *Listener) WaitIdle(ctx context.Context) error {
	l.mu.Lock()
	prev := l.prev
	l.mu.Unlock()
	if prev == nil {
		return nil
	}
	select {
	case <-prev.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close makes pending and future Accept calls fail. Connections already
// handed out stay open; their owner closes them.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

// Addr returns the port's device path.
func (l *Listener) Addr() net.Addr { return l.addr }

// pollHUP reports whether poll(2) flags f with POLLHUP, which virtio
// console ports do while no host client is connected to the chardev.
func pollHUP(f *os.File) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var (
		revents int16
		perr    error
	)
	// Control, unlike Fd, leaves the descriptor non-blocking.
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			_, perr = unix.Poll(fds, 0)
			if perr != unix.EINTR {
				break
			}
		}
		revents = fds[0].Revents
	}); err != nil {
		return false, err
	}
	if perr != nil {
		return false, os.NewSyscallError("poll", perr)
	}
	return revents&unix.POLLHUP != 0, nil
}

// Addr is a port's device path as a net.Addr.
type Addr string

// Network returns "virtio-serial".
func (a Addr) Network() string { return "virtio-serial" }

func (a Addr) String() string { return string(a) }

// conn is a net.Conn over an open port.
type conn struct {
	f      *os.File
	addr   Addr
	opened time.Time

	once sync.Once
	done chan struct{} // closed by Close
}

var _ net.Conn = (*conn)(nil)

// Read reads from the port. A port the host removed (ENODEV) is at its
// end, as one the host hung up.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	if errors.Is(err, syscall.ENODEV) {
		err = io.EOF
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error) { return c.f.Write(p) }

// Close closes the port and lets the Listener accept again.
func (c *conn) Close() error {
	err := os.ErrClosed
	c.once.Do(func() {
		err = c.f.Close()
		close(c.done)
	})
	return err
}

func (c *conn) LocalAddr() net.Addr                { return c.addr }
func (c *conn) RemoteAddr() net.Addr               { return c.addr }
func (c *conn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *conn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *conn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }
