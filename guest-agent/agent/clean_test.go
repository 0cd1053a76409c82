package agent

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	monitorapi "github.com/sccontainers/scc/api/monitor/v1"
)

// cleaningMonitor accepts or refuses cleans and reports a generation.
type cleaningMonitor struct {
	fakeMonitor
	refuse error
	nonce  []byte
}

func (m *cleaningMonitor) Clean(_ context.Context, req *monitorapi.CleanRequest) (*emptypb.Empty, error) {
	if m.refuse != nil {
		return nil, m.refuse
	}
	m.nonce = req.GetNonce()
	return &emptypb.Empty{}, nil
}

func (m *cleaningMonitor) Info(context.Context, *emptypb.Empty) (*monitorapi.InfoResponse, error) {
	return &monitorapi.InfoResponse{Generation: 3}, nil
}

func TestClean(t *testing.T) {
	ctx := context.Background()
	nonce := make([]byte, 32)
	nonce[0] = 9

	ended := 0
	mon := &cleaningMonitor{}
	s := New(Options{Monitor: mon, EndForClean: func() { ended++ }})
	if _, err := s.Clean(ctx, &agentapi.CleanRequest{Nonce: nonce[:8]}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("short nonce: %v, want invalid argument", err)
	}
	s.mu.Lock()
	s.containers["left"] = &container{}
	s.mu.Unlock()
	if _, err := s.Clean(ctx, &agentapi.CleanRequest{Nonce: nonce}); !errdefs.IsFailedPrecondition(err) || ended != 0 {
		t.Errorf("clean with a container left: %v (ended %d), want failed precondition", err, ended)
	}
	s.mu.Lock()
	delete(s.containers, "left")
	s.mu.Unlock()

	if _, err := s.key(); err != nil {
		t.Fatal(err)
	}
	mon.refuse = errors.New("no init_on_free")
	if _, err := s.Clean(ctx, &agentapi.CleanRequest{Nonce: nonce}); err == nil || ended != 0 {
		t.Errorf("clean the monitor refused: %v (ended %d)", err, ended)
	}
	mon.refuse = nil
	if _, err := s.Clean(ctx, &agentapi.CleanRequest{Nonce: nonce}); err != nil {
		t.Fatal(err)
	}
	if ended != 1 || string(mon.nonce) != string(nonce) {
		t.Errorf("after a clean: ended %d times, monitor got nonce %x", ended, mon.nonce)
	}
	s.keyMu.Lock()
	key := s.identity
	s.keyMu.Unlock()
	if key != nil {
		t.Error("the agent kept its key through a clean")
	}

	if _, err := New(Options{Monitor: mon}).Clean(ctx, &agentapi.CleanRequest{Nonce: nonce}); !errdefs.IsNotImplemented(err) {
		t.Errorf("clean without a way to end: %v, want not implemented", err)
	}
}

func TestReusedValidates(t *testing.T) {
	s := New(Options{Monitor: &cleaningMonitor{}})
	if _, err := s.Reused(context.Background(), &agentapi.ReusedRequest{Entropy: make([]byte, 8)}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("little entropy: %v, want invalid argument", err)
	}
	if _, err := s.Reused(context.Background(), &agentapi.ReusedRequest{Entropy: make([]byte, 64)}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("no time: %v, want invalid argument", err)
	}
}
