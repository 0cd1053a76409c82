package shim

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/types/known/emptypb"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// greetingAgent plays a guest whose every loopback port answers with a
// greeting naming the port, then closes.
type greetingAgent struct {
	agent.AgentService
	mu     sync.Mutex
	dialed []uint32
	sent   map[uint64]bool // connections whose greeting was read
}

func (g *greetingAgent) DialPort(_ context.Context, r *agent.DialPortRequest) (*agent.DialPortResponse, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dialed = append(g.dialed, r.Port)
	return &agent.DialPortResponse{Id: uint64(r.Port)}, nil
}

func (g *greetingAgent) WritePort(_ context.Context, r *agent.WritePortRequest) (*agent.WriteStdinResponse, error) {
	return &agent.WriteStdinResponse{Len: uint32(len(r.Data))}, nil
}

func (g *greetingAgent) ReadPort(_ context.Context, r *agent.ReadPortRequest) (*agent.ReadOutputResponse, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sent[r.Id] {
		return &agent.ReadOutputResponse{Eof: true}, nil
	}
	g.sent[r.Id] = true
	return &agent.ReadOutputResponse{Data: []byte(fmt.Sprintf("guest port %d", r.Id))}, nil
}

func (g *greetingAgent) ClosePort(context.Context, *agent.ClosePortRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []uint16 {
	t.Helper()
	var ports []uint16
	for range n {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, uint16(ln.Addr().(*net.TCPAddr).Port))
	}
	return ports
}

func TestPublishHostPorts(t *testing.T) {
	ag := &greetingAgent{sent: map[uint64]bool{}}
	ports := freePorts(t, 2)
	h, err := publishHostPorts(context.Background(), ports, ag)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		conn, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p))))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(conn)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("guest port %d", p); string(b) != want {
			t.Errorf("port %d answered %q, want %q", p, b, want)
		}
	}
	h.close()
	if _, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0])))); err == nil {
		t.Error("a port is still published after close")
	}
	ag.mu.Lock()
	defer ag.mu.Unlock()
	if len(ag.dialed) != 2 || ag.dialed[0] != uint32(ports[0]) || ag.dialed[1] != uint32(ports[1]) {
		t.Errorf("guest ports dialed %v, want %v", ag.dialed, ports)
	}
}

func TestPublishHostPortsTaken(t *testing.T) {
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := uint16(taken.Addr().(*net.TCPAddr).Port)
	free := freePorts(t, 1)
	_, err = publishHostPorts(context.Background(), []uint16{free[0], port}, &greetingAgent{sent: map[uint64]bool{}})
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(int(port))) {
		t.Fatalf("publishing a taken port: %v, want an error naming port %d", err, port)
	}
	// Nothing of the failed publication stays listening.
	ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(free[0]))))
	if err != nil {
		t.Errorf("port %d published before the failure is still taken: %v", free[0], err)
	} else {
		ln.Close()
	}
}
