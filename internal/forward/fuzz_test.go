package forward

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzHandle feeds the host's end of a stream whatever a guest may send:
// the host must answer or drop it, never dial anything but a configured
// target, and never hang.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{"registry\n", "kbs\nGET / HTTP/1.1\r\n\r\n", "127.0.0.1:22\n", "\n", "a\x00b\n", string(bytes.Repeat([]byte("x"), 600))} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var dialled []string
		s := &Server{
			Targets: map[string]string{TargetRegistry: "registry.test:5000"},
			Dial: func(_ context.Context, _, addr string) (net.Conn, error) {
				dialled = append(dialled, addr)
				g, h := net.Pipe()
				go func() { io.Copy(io.Discard, h); h.Close() }()
				return halfCloser{g}, nil
			},
		}
		g, h := net.Pipe()
		done := make(chan error, 1)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { done <- s.Serve(ctx, h) }()
		c, err := NewClient(g)
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		st.Write(in)
		st.Close()
		st.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, st)
		c.Close()
		cancel()
		<-done
		for _, a := range dialled {
			if a != "registry.test:5000" {
				t.Fatalf("host dialled %q", a)
			}
		}
	})
}

// halfCloser is a target that ends as soon as the guest stops sending.
type halfCloser struct{ net.Conn }

func (h halfCloser) CloseWrite() error { return h.Conn.Close() }
