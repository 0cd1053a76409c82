// Package qmp is a client for the QEMU Machine Protocol: JSON messages over
// a unix socket, with commands answered in order of their ids and
// asynchronous events interleaved.
//
// A session starts with a greeting from QEMU and must negotiate
// capabilities (qmp_capabilities) before any other command; Dial and
// NewClient do both before returning.
package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Execute once the connection is gone; the error
// also wraps the reason the connection ended, if any.
var ErrClosed = errors.New("qmp connection closed")

// Error is an error object returned by QEMU for a failed command.
type Error struct {
	Class string `json:"class"` // e.g. GenericError, CommandNotFound, DeviceNotFound
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

// Event is an asynchronous QMP event such as STOP, RESUME, SHUTDOWN or
// VSERPORT_CHANGE.
type Event struct {
	Name string
	Data json.RawMessage // event-specific object; may be empty
	Time time.Time       // when QEMU emitted it
}

// Greeting is QEMU's first message on a new connection.
type Greeting struct {
	Version struct {
		QEMU struct {
			Major int `json:"major"`
			Minor int `json:"minor"`
			Micro int `json:"micro"`
		} `json:"qemu"`
		Package string `json:"package"`
	} `json:"version"`
	Capabilities []string `json:"capabilities"`
}

// eventBuffer is how many events wait for a reader before newer ones are
// dropped; the read loop must never block on an absent event consumer, or
// command replies would stall behind it.
const eventBuffer = 64

// Client is one QMP session. Its methods are safe for concurrent use.
type Client struct {
	conn     net.Conn
	greeting Greeting
	events   chan Event
	done     chan struct{} // closed when the read loop ends

	wmu sync.Mutex // serialises writes to conn

	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan reply // request id -> waiter, guarded by mu
	err     error                 // why the read loop ended, guarded by mu
	dropped int                   // events dropped for a full buffer, guarded by mu
}

type reply struct {
	ret json.RawMessage
	err *Error
}

// message is any message QEMU sends; which fields are set tells its kind.
type message struct {
	QMP       *Greeting       `json:"QMP"`
	Return    json.RawMessage `json:"return"`
	Error     *Error          `json:"error"`
	ID        json.RawMessage `json:"id"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// Dial connects to the QMP socket at path and negotiates capabilities.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial qmp: %w", err)
	}
	c, err := NewClient(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// NewClient runs the QMP handshake over conn: it reads the greeting and
// negotiates capabilities, within ctx. The Client owns conn from then on,
// including on error.
func NewClient(ctx context.Context, conn net.Conn) (*Client, error) {
	dec := json.NewDecoder(conn)

	// Bound the greeting read by ctx: unblock the decoder by expiring the
	// connection's deadline when ctx ends first.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	var m message
	err := dec.Decode(&m)
	if !stop() {
		conn.Close()
		return nil, fmt.Errorf("read qmp greeting: %w", ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read qmp greeting: %w", err)
	}
	if m.QMP == nil {
		conn.Close()
		return nil, errors.New("read qmp greeting: first message is not a greeting")
	}

	c := &Client{
		conn:     conn,
		greeting: *m.QMP,
		events:   make(chan Event, eventBuffer),
		done:     make(chan struct{}),
		pending:  make(map[string]chan reply),
	}
	go c.readLoop(dec)

	if err := c.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("negotiate qmp capabilities: %w", err)
	}
	return c, nil
}

// Greeting returns the greeting QEMU sent when the session opened.
func (c *Client) Greeting() Greeting { return c.greeting }

// Events delivers asynchronous events in the order QEMU sent them. The
// channel is closed when the connection ends. Events that find the buffer
// full are dropped (see Dropped), so a consumer that cares must keep up.
func (c *Client) Events() <-chan Event { return c.events }

// Dropped reports how many events were dropped because nobody read them.
func (c *Client) Dropped() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Done is closed when the connection has ended; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the connection ended: nil while it is open, an error wrapping
// ErrClosed afterwards.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the session; pending and later commands fail with ErrClosed.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Execute runs one command and waits for its reply. args is marshalled as
// the command's arguments and omitted when nil; the reply's return value is
// unmarshalled into result unless result is nil. A failed command returns
// an *Error. When ctx ends first Execute returns ctx.Err(); QEMU may still
// carry the command out.
func (c *Client) Execute(ctx context.Context, cmd string, args any, result any) error {
	return c.execute(ctx, cmd, args, result, nil)
}

// ExecuteWithFile is Execute passing f's descriptor along with the command
// (SCM_RIGHTS), as getfd and add-fd expect. The connection must be a unix
// socket.
func (c *Client) ExecuteWithFile(ctx context.Context, cmd string, args any, f *os.File, result any) error {
	if f == nil {
		return fmt.Errorf("qmp %s: no file to pass", cmd)
	}
	return c.execute(ctx, cmd, args, result, f)
}

func (c *Client) execute(ctx context.Context, cmd string, args any, result any, f *os.File) error {
	ch := make(chan reply, 1)

	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	c.nextID++
	n := c.nextID
	id := strconv.FormatUint(n, 10)
	c.pending[id] = ch
	c.mu.Unlock()

	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}

	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        uint64 `json:"id"`
	}{cmd, args, n}
	b, err := json.Marshal(req)
	if err != nil {
		forget()
		return fmt.Errorf("qmp %s: encode arguments: %w", cmd, err)
	}
	if err := c.write(ctx, b, f); err != nil {
		forget()
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}

	select {
	case r, ok := <-ch:
		if !ok {
			return fmt.Errorf("qmp %s: %w", cmd, c.Err())
		}
		if r.err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, r.err)
		}
		if result == nil {
			return nil
		}
		if err := json.Unmarshal(r.ret, result); err != nil {
			return fmt.Errorf("qmp %s: decode reply: %w", cmd, err)
		}
		return nil
	case <-ctx.Done():
		forget()
		return fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
}

// write sends one message, giving up when ctx ends.
// write sends one message, giving up when ctx ends; f, if set, travels
// with it as ancillary data.
func (c *Client) write(ctx context.Context, b []byte, f *os.File) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
		defer c.conn.SetWriteDeadline(time.Time{})
	}
	b = append(b, '\n')
	if f == nil {
		_, err := c.conn.Write(b)
		return err
	}
	uc, ok := c.conn.(*net.UnixConn)
	if !ok {
		return errors.New("passing a file needs a unix socket")
	}
	// QEMU takes the descriptor with the first bytes of the message it
	// arrives with, so the whole command goes in one sendmsg.
	_, _, err := uc.WriteMsgUnix(b, unix.UnixRights(int(f.Fd())), nil)
	return err
}

func (c *Client) readLoop(dec *json.Decoder) {
	var err error
	for {
		var m message
		if err = dec.Decode(&m); err != nil {
			break
		}
		switch {
		case m.Event != "":
			c.deliver(m)
		case m.Return != nil || m.Error != nil:
			c.resolve(m)
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = ErrClosed
	} else {
		err = fmt.Errorf("%w: %w", ErrClosed, err)
	}

	c.mu.Lock()
	c.err = err
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
	close(c.events)
	close(c.done)
}

func (c *Client) resolve(m message) {
	id := string(m.ID)
	c.mu.Lock()
	ch, ok := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if !ok {
		// A reply to a command whose caller gave up, or an error QEMU could
		// not attach to a request (it drops the id of malformed input, which
		// this client never sends): nobody is waiting for it.
		return
	}
	ch <- reply{ret: m.Return, err: m.Error}
}

func (c *Client) deliver(m message) {
	ev := Event{Name: m.Event, Data: m.Data}
	if m.Timestamp != nil {
		ev.Time = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
	}
	select {
	case c.events <- ev:
	default:
		c.mu.Lock()
		c.dropped++
		c.mu.Unlock()
	}
}
