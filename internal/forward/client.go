package forward

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/hashicorp/yamux"
)

// Client is the guest's end of the channel.
type Client struct {
	sess *yamux.Session
}

// NewClient starts the guest's end of a session on conn, the open
// virtio-serial port. Closing the Client closes conn.
func NewClient(conn io.ReadWriteCloser) (*Client, error) {
	sess, err := yamux.Client(conn, sessionConfig())
	if err != nil {
		return nil, fmt.Errorf("forward: start session: %w", err)
	}
	return &Client{sess: sess}, nil
}

// Dial opens a stream to target. The network and address of a net.Dialer
// are not asked for: the host decides where target is. The stream's Close
// is a half close (yamux's): it ends what the guest sends, and the stream
// goes once the target's side has ended too.
func (c *Client) Dial(ctx context.Context, target string) (net.Conn, error) {
	if !ValidTarget(target) {
		return nil, fmt.Errorf("forward: target name %q is not valid", target)
	}
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		conn, err := c.open(target)
		ch <- result{conn, err}
	}()
	select {
	case r := <-ch:
		return r.conn, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("forward: dial %s: %w", target, ctx.Err())
	}
}

func (c *Client) open(target string) (net.Conn, error) {
	s, err := c.sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("forward: open stream to %s: %w", target, err)
	}
	if _, err := io.WriteString(s, target+"\n"); err != nil {
		s.Close()
		return nil, fmt.Errorf("forward: open stream to %s: %w", target, err)
	}
	answer, err := readLine(s)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("forward: open stream to %s: read answer: %w", target, err)
	}
	if answer != answerOK {
		s.Close()
		return nil, fmt.Errorf("%w: %s: %s", ErrRefused, target, strings.TrimPrefix(answer, answerErrorPrefix))
	}
	return s, nil
}

// Close ends the session and closes the port.
func (c *Client) Close() error { return c.sess.Close() }

// Closed is closed once the session has ended (the host went away).
func (c *Client) Closed() <-chan struct{} { return c.sess.CloseChan() }

// Answers of the host to a stream's header.
const (
	answerOK          = "ok"
	answerErrorPrefix = "error: "
)
