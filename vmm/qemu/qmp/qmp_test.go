package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const greeting = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg"}, "capabilities": ["oob"]}}`

// request is what the fake server decodes from the client.
type request struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

// fakeQEMU is the server end of one QMP connection, driven step by step
// by the test.
type fakeQEMU struct {
	t    *testing.T
	conn net.Conn
	dec  *json.Decoder
}

func (f *fakeQEMU) send(s string) {
	f.t.Helper()
	if _, err := f.conn.Write([]byte(s + "\r\n")); err != nil {
		f.t.Errorf("fake qemu: write: %v", err)
	}
}

func (f *fakeQEMU) recv() request {
	f.t.Helper()
	var r request
	if err := f.dec.Decode(&r); err != nil {
		f.t.Errorf("fake qemu: read request: %v", err)
	}
	return r
}

func (f *fakeQEMU) reply(r request, ret string) {
	f.t.Helper()
	f.send(`{"return": ` + ret + `, "id": ` + string(r.ID) + `}`)
}

// waitHangup keeps the connection open until the client closes it.
func (f *fakeQEMU) waitHangup() {
	var discard json.RawMessage
	for f.dec.Decode(&discard) == nil {
	}
}

// handshake plays QEMU's side of the session opening.
func (f *fakeQEMU) handshake() {
	f.t.Helper()
	f.send(greeting)
	r := f.recv()
	if r.Execute != "qmp_capabilities" {
		f.t.Errorf("first command = %q, want qmp_capabilities", r.Execute)
	}
	f.reply(r, "{}")
}

// serve listens on a unix socket in a temp dir, runs script on the first
// connection in a goroutine and returns the socket path. The test waits for
// the script to end before finishing.
func serve(t *testing.T, script func(f *fakeQEMU)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := l.Accept()
		l.Close()
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer conn.Close()
		script(&fakeQEMU{t: t, conn: conn, dec: json.NewDecoder(conn)})
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return path
}

func dial(t *testing.T, path string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHandshake(t *testing.T) {
	path := serve(t, func(f *fakeQEMU) {
		f.handshake()
		f.waitHangup()
	})
	c := dial(t, path)
	g := c.Greeting()
	if v := g.Version.QEMU; v.Major != 7 || v.Minor != 2 || v.Micro != 22 {
		t.Errorf("greeting version = %+v, want 7.2.22", v)
	}
	if len(g.Capabilities) != 1 || g.Capabilities[0] != "oob" {
		t.Errorf("greeting capabilities = %v, want [oob]", g.Capabilities)
	}
}

func TestHandshakeFailures(t *testing.T) {
	tests := []struct {
		name   string
		script func(f *fakeQEMU)
	}{
		{"not a greeting", func(f *fakeQEMU) {
			f.send(`{"return": {}}`)
		}},
		{"capabilities refused", func(f *fakeQEMU) {
			f.send(greeting)
			r := f.recv()
			f.send(`{"error": {"class": "GenericError", "desc": "nope"}, "id": ` + string(r.ID) + `}`)
		}},
		{"hang up before greeting", func(f *fakeQEMU) {}},
		{"silent", func(f *fakeQEMU) {
			// Hold the connection open without a greeting until the
			// client gives up and closes it.
			f.waitHangup()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := serve(t, tt.script)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			c, err := Dial(ctx, path)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded, want error")
			}
		})
	}
}

func TestExecute(t *testing.T) {
	path := serve(t, func(f *fakeQEMU) {
		f.handshake()

		r := f.recv()
		if r.Execute != "query-status" || r.Arguments != nil {
			t.Errorf("got %s %s, want query-status without arguments", r.Execute, r.Arguments)
		}
		f.reply(r, `{"status": "running", "singlestep": false, "running": true}`)

		r = f.recv()
		var args struct {
			URI string `json:"uri"`
		}
		if err := json.Unmarshal(r.Arguments, &args); r.Execute != "migrate" || err != nil || args.URI != "exec:cat > /x" {
			t.Errorf("got %s %s, want migrate with uri", r.Execute, r.Arguments)
		}
		f.reply(r, `{}`)

		r = f.recv()
		f.send(`{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": ` + string(r.ID) + `}`)
		f.waitHangup()
	})
	c := dial(t, path)
	ctx := testCtx(t)

	var st struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil {
		t.Fatalf("query-status: %v", err)
	}
	if st.Status != "running" || !st.Running {
		t.Errorf("status = %+v, want running", st)
	}

	if err := c.Execute(ctx, "migrate", map[string]string{"uri": "exec:cat > /x"}, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}

	err := c.Execute(ctx, "nope", nil, nil)
	var qerr *Error
	if !errors.As(err, &qerr) {
		t.Fatalf("nope: err = %v, want *qmp.Error", err)
	}
	if qerr.Class != "CommandNotFound" || qerr.Desc == "" {
		t.Errorf("nope: error = %+v, want class CommandNotFound with a description", qerr)
	}
}

func TestEventsInterleaved(t *testing.T) {
	path := serve(t, func(f *fakeQEMU) {
		f.handshake()
		r := f.recv()
		// QEMU emits the STOP event before it answers the stop command.
		f.send(`{"timestamp": {"seconds": 1700000000, "microseconds": 250}, "event": "STOP"}`)
		f.reply(r, `{}`)
		f.send(`{"timestamp": {"seconds": 1700000001, "microseconds": 0}, "event": "VSERPORT_CHANGE", "data": {"open": true, "id": "agent"}}`)
		f.waitHangup()
	})
	c := dial(t, path)
	ctx := testCtx(t)

	if err := c.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatalf("stop: %v", err)
	}

	ev := nextEvent(t, c)
	if ev.Name != "STOP" || !ev.Time.Equal(time.Unix(1700000000, 250000)) {
		t.Errorf("first event = %s at %v, want STOP at 1700000000.000250", ev.Name, ev.Time)
	}
	ev = nextEvent(t, c)
	var data struct {
		Open bool   `json:"open"`
		ID   string `json:"id"`
	}
	if err := json.Unmarshal(ev.Data, &data); ev.Name != "VSERPORT_CHANGE" || err != nil || !data.Open || data.ID != "agent" {
		t.Errorf("second event = %s %s, want VSERPORT_CHANGE open agent", ev.Name, ev.Data)
	}
}

func nextEvent(t *testing.T, c *Client) Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatal("events channel closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return Event{}
}

// Replies are matched to commands by id, not by order.
func TestConcurrentOutOfOrder(t *testing.T) {
	path := serve(t, func(f *fakeQEMU) {
		f.handshake()
		a, b := f.recv(), f.recv()
		f.reply(b, `"`+b.Execute+`"`)
		f.reply(a, `"`+a.Execute+`"`)
		f.waitHangup()
	})
	c := dial(t, path)
	ctx := testCtx(t)

	var wg sync.WaitGroup
	for _, cmd := range []string{"one", "two"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got string
			if err := c.Execute(ctx, cmd, nil, &got); err != nil {
				t.Errorf("%s: %v", cmd, err)
			} else if got != cmd {
				t.Errorf("%s: got the reply for %q", cmd, got)
			}
		}()
	}
	wg.Wait()
}

func TestConnectionLost(t *testing.T) {
	path := serve(t, func(f *fakeQEMU) {
		f.handshake()
		f.recv() // quit: QEMU may exit before it answers
	})
	c := dial(t, path)
	ctx := testCtx(t)

	err := c.Execute(ctx, "quit", nil, nil)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("quit: err = %v, want ErrClosed", err)
	}
	<-c.Done()
	if !errors.Is(c.Err(), ErrClosed) {
		t.Errorf("Err() = %v, want ErrClosed", c.Err())
	}
	if _, ok := <-c.Events(); ok {
		t.Error("events channel still open after the connection ended")
	}
	if err := c.Execute(ctx, "query-status", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("command after close: err = %v, want ErrClosed", err)
	}
}

// A caller that gives up does not disturb the next command, even when the
// late reply arrives in between.
func TestExecuteContextCancel(t *testing.T) {
	release := make(chan struct{})
	path := serve(t, func(f *fakeQEMU) {
		f.handshake()
		slow := f.recv()
		<-release
		f.reply(slow, `"late"`)
		next := f.recv()
		f.reply(next, `"next"`)
		f.waitHangup()
	})
	c := dial(t, path)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Execute(ctx, "slow", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow: err = %v, want DeadlineExceeded", err)
	}
	close(release)

	var got string
	if err := c.Execute(testCtx(t), "next", nil, &got); err != nil || got != "next" {
		t.Fatalf("next: got %q, %v; want \"next\"", got, err)
	}
}

// Events nobody reads are dropped rather than stalling command replies.
func TestUnreadEventsDoNotBlockReplies(t *testing.T) {
	const flood = eventBuffer + 10
	path := serve(t, func(f *fakeQEMU) {
		f.handshake()
		r := f.recv()
		for range flood {
			f.send(`{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "RTC_CHANGE", "data": {"offset": 0}}`)
		}
		f.reply(r, `{}`)
		f.waitHangup()
	})
	c := dial(t, path)
	if err := c.Execute(testCtx(t), "cont", nil, nil); err != nil {
		t.Fatalf("cont: %v", err)
	}
	if got := c.Dropped(); got != flood-eventBuffer {
		t.Errorf("Dropped() = %d, want %d", got, flood-eventBuffer)
	}
}

// TestExecuteWithFile passes a descriptor with a command, as getfd needs:
// the server receives it in the same message as the command.
func TestExecuteWithFile(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "passed")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	path := serve(t, func(q *fakeQEMU) {
		q.handshake()
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4))
		n, oobn, _, _, err := q.conn.(*net.UnixConn).ReadMsgUnix(buf, oob)
		if err != nil {
			t.Errorf("read: %v", err)
			return
		}
		var r request
		if err := json.Unmarshal(buf[:n], &r); err != nil || r.Execute != "getfd" || string(r.Arguments) != `{"fdname":"tap0"}` {
			t.Errorf("command %q %s (%v), want getfd {\"fdname\":\"tap0\"}", r.Execute, r.Arguments, err)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			t.Errorf("control messages: %v %v", msgs, err)
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			t.Errorf("rights: %v %v", fds, err)
			return
		}
		got := os.NewFile(uintptr(fds[0]), "received")
		got.WriteString("through the socket")
		got.Close()
		q.reply(r, "{}")
		q.waitHangup()
	})
	c := dial(t, path)
	if err := c.ExecuteWithFile(testCtx(t), "getfd", map[string]string{"fdname": "tap0"}, f, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil || string(b) != "through the socket" {
		t.Errorf("file written through the passed descriptor has %q (%v)", b, err)
	}
	if err := c.ExecuteWithFile(testCtx(t), "getfd", nil, nil, nil); err == nil {
		t.Error("ExecuteWithFile without a file succeeded")
	}
}
