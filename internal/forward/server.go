package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
	"github.com/hashicorp/yamux"
)

// dialTimeout bounds the host's connection to a target.
const dialTimeout = 10 * time.Second

// TargetStats counts what crossed the channel for one target.
type TargetStats struct {
	// Streams is the number of streams connected to the target.
	Streams int64 `json:"streams"`
	// Refused is the number of streams that named the target and were
	// not connected (it could not be dialled).
	Refused int64 `json:"refused"`
	// ToTarget and FromTarget are payload bytes, guest to target and
	// target to guest.
	ToTarget   int64 `json:"to_target"`
	FromTarget int64 `json:"from_target"`
}

// Server is the host's end of the channel.
type Server struct {
	// Targets maps the names a guest may use to the addresses (host:port)
	// the host dials for them. Names not in it are refused.
	Targets map[string]string
	// Dial connects to a target's address; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// StreamDone, if set, is called after each stream has ended, with the
	// totals so far.
	StreamDone func(map[string]TargetStats)

	mu    sync.Mutex
	stats map[string]*counters // by target name, guarded by mu
}

type counters struct {
	streams, refused, to, from atomic.Int64
}

// Serve runs the host's end of a session on conn (the port's host
// socket) until the guest's end goes away or ctx is done. It closes conn.
func (s *Server) Serve(ctx context.Context, conn io.ReadWriteCloser) error {
	sess, err := yamux.Server(conn, sessionConfig())
	if err != nil {
		conn.Close()
		return fmt.Errorf("forward: start session: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	defer sess.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			// The guest's end going away, whatever the transport says
			// about it, ends the session: that is the normal end.
			if sess.IsClosed() || errors.Is(err, io.EOF) || errors.Is(err, yamux.ErrSessionShutdown) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("forward: accept stream: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(ctx, st)
		}()
	}
}

// Stats returns the counts of every target named so far.
func (s *Server) Stats() map[string]TargetStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]TargetStats, len(s.stats))
	for name, c := range s.stats {
		out[name] = TargetStats{Streams: c.streams.Load(), Refused: c.refused.Load(), ToTarget: c.to.Load(), FromTarget: c.from.Load()}
	}
	return out
}

// TargetNames returns the configured target names, sorted.
func (s *Server) TargetNames() []string {
	names := make([]string, 0, len(s.Targets))
	for n := range s.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (s *Server) counters(target string) *counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stats == nil {
		s.stats = make(map[string]*counters)
	}
	c, ok := s.stats[target]
	if !ok {
		c = &counters{}
		s.stats[target] = c
	}
	return c
}

func (s *Server) handle(ctx context.Context, st *yamux.Stream) {
	defer st.Close()
	_ = st.SetReadDeadline(time.Now().Add(dialTimeout))
	target, err := readLine(st)
	if err != nil {
		log.G(ctx).WithError(err).Warn("forward: read stream header")
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	addr, ok := s.Targets[target]
	if !ok || !ValidTarget(target) {
		// Unknown names are not counted: a guest could grow the map.
		log.G(ctx).WithField("target", target).Warn("forward: guest named an unknown target")
		io.WriteString(st, answerErrorPrefix+"unknown target\n")
		return
	}
	c := s.counters(target)
	dial := s.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	out, err := dial(dctx, "tcp", addr)
	cancel()
	if err != nil {
		c.refused.Add(1)
		log.G(ctx).WithError(err).WithField("target", target).Warn("forward: dial target")
		io.WriteString(st, answerErrorPrefix+"target "+target+" unreachable\n")
		return
	}
	defer out.Close()
	c.streams.Add(1)
	if _, err := io.WriteString(st, answerOK+"\n"); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, _ := io.Copy(out, st)
		c.to.Add(n)
		if cw, ok := out.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	n, _ := io.Copy(st, out)
	c.from.Add(n)
	// yamux's Close is a half close: the guest may still be sending.
	st.Close()
	<-done
	if s.StreamDone != nil {
		s.StreamDone(s.Stats())
	}
}
