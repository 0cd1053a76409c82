package agent

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/guest-agent/stream"
)

const (
	// portDialTimeout bounds a dial to the guest's loopback, which is
	// answered at once unless the guest is badly overloaded.
	portDialTimeout = 10 * time.Second
	// portBuffer is how much a connection's incoming bytes may queue
	// before the agent stops reading it, until the host reads.
	portBuffer = 256 << 10
)

// portConn is a connection to a port of the guest's loopback, forwarded
// to the host.
type portConn struct {
	conn *net.TCPConn
	in   *stream.Buffer // what the guest's peer sent, until the host reads it

	writeMu sync.Mutex // serialises writes and the close of the sending side
}

// ports holds the forwarded connections by id.
type ports struct {
	mu    sync.Mutex
	next  uint64               // guarded by mu
	conns map[uint64]*portConn // guarded by mu
}

func (ps *ports) get(id uint64) (*portConn, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	pc, ok := ps.conns[id]
	if !ok {
		return nil, fmt.Errorf("port connection %d: %w", id, errdefs.ErrNotFound)
	}
	return pc, nil
}

// DialPort connects to a port on the guest's loopback: IPv4 first, then
// IPv6, as containerd does on the host for runc's pods.
func (s *Service) DialPort(ctx context.Context, req *agentapi.DialPortRequest) (*agentapi.DialPortResponse, error) {
	port := req.GetPort()
	if port == 0 || port > 65535 {
		return nil, invalid("port %d", port)
	}
	d := net.Dialer{Timeout: portDialTimeout}
	p := strconv.Itoa(int(port))
	conn, err := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err != nil {
		var err6 error
		conn, err6 = d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p))
		if err6 != nil {
			return nil, fmt.Errorf("dial port %d on the guest's loopback: %v; IPv6: %v: %w", port, err, err6, errdefs.ErrUnavailable)
		}
	}
	pc := &portConn{conn: conn.(*net.TCPConn), in: stream.New(portBuffer)}
	go pc.in.Fill(pc.conn)

	s.ports.mu.Lock()
	defer s.ports.mu.Unlock()
	s.ports.next++
	id := s.ports.next
	s.ports.conns[id] = pc
	return &agentapi.DialPortResponse{Id: id}, nil
}

// WritePort writes to a forwarded connection and, with close_write, then
// shuts down its sending side.
func (s *Service) WritePort(ctx context.Context, req *agentapi.WritePortRequest) (*agentapi.WriteStdinResponse, error) {
	pc, err := s.ports.get(req.GetId())
	if err != nil {
		return nil, err
	}
	pc.writeMu.Lock()
	defer pc.writeMu.Unlock()
	n, err := pc.conn.Write(req.GetData())
	if err != nil {
		return &agentapi.WriteStdinResponse{Len: uint32(n)}, fmt.Errorf("write port connection %d: %w", req.GetId(), err)
	}
	if req.GetCloseWrite() {
		if err := pc.conn.CloseWrite(); err != nil {
			return &agentapi.WriteStdinResponse{Len: uint32(n)}, fmt.Errorf("close port connection %d for writing: %w", req.GetId(), err)
		}
	}
	return &agentapi.WriteStdinResponse{Len: uint32(n)}, nil
}

// ReadPort returns the next bytes a forwarded connection received.
func (s *Service) ReadPort(ctx context.Context, req *agentapi.ReadPortRequest) (*agentapi.ReadOutputResponse, error) {
	pc, err := s.ports.get(req.GetId())
	if err != nil {
		return nil, err
	}
	return readOutput(ctx, pc.in, req.GetLen())
}

// ClosePort closes a forwarded connection; a ReadPort waiting on it
// returns end of stream.
func (s *Service) ClosePort(ctx context.Context, req *agentapi.ClosePortRequest) (*emptypb.Empty, error) {
	s.ports.mu.Lock()
	pc, ok := s.ports.conns[req.GetId()]
	delete(s.ports.conns, req.GetId())
	s.ports.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("port connection %d: %w", req.GetId(), errdefs.ErrNotFound)
	}
	pc.in.Discard()
	if err := pc.conn.Close(); err != nil {
		return nil, fmt.Errorf("close port connection %d: %w", req.GetId(), err)
	}
	return &emptypb.Empty{}, nil
}
