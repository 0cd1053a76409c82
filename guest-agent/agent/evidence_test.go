package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	monitorapi "github.com/sccontainers/scc/api/monitor/v1"
	"github.com/sccontainers/scc/attest"
)

// fakeMonitor records what the agent asks of the monitor.
type fakeMonitor struct {
	monitorapi.MonitorService
	reportData []byte
	initData   []byte
	restored   *monitorapi.RestoredRequest
}

func (m *fakeMonitor) Evidence(_ context.Context, req *monitorapi.EvidenceRequest) (*monitorapi.EvidenceResponse, error) {
	m.reportData = req.GetReportData()
	return &monitorapi.EvidenceResponse{Tee: "vtpm", Evidence: []byte(`{"tee":"vtpm"}`), TpmEkPublic: []byte("ek")}, nil
}

func (m *fakeMonitor) BindInitData(_ context.Context, req *monitorapi.BindInitDataRequest) (*emptypb.Empty, error) {
	m.initData = req.GetDigest()
	return &emptypb.Empty{}, nil
}

func (m *fakeMonitor) Restored(_ context.Context, req *monitorapi.RestoredRequest) (*emptypb.Empty, error) {
	m.restored = req
	return &emptypb.Empty{}, nil
}

func TestGetEvidenceBindsTheAgentKey(t *testing.T) {
	mon := &fakeMonitor{}
	s := New(Options{Monitor: mon})
	ctx := context.Background()
	resp, err := s.GetEvidence(ctx, &agentapi.GetEvidenceRequest{Nonce: "challenge"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParsePKIXPublicKey(resp.GetPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	want, err := attest.ReportData("challenge", key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mon.reportData, want[:]) {
		t.Error("the evidence does not bind the nonce and the agent's key")
	}
	if resp.GetTee() != "vtpm" || string(resp.GetTpmEkPublic()) != "ek" {
		t.Errorf("response %+v lost the monitor's answer", resp)
	}

	again, err := s.GetEvidence(ctx, &agentapi.GetEvidenceRequest{Nonce: "other"})
	if err != nil || !bytes.Equal(again.GetPublicKey(), resp.GetPublicKey()) {
		t.Fatalf("the key changed between two requests: %v", err)
	}

	// Restored forgets the key (after a reseed this test cannot do
	// without root); the next request makes another.
	s.forgetKey()
	after, err := s.GetEvidence(ctx, &agentapi.GetEvidenceRequest{Nonce: "challenge"})
	if err != nil || bytes.Equal(after.GetPublicKey(), resp.GetPublicKey()) {
		t.Fatalf("the key survived a restore: %v", err)
	}
}

func TestGetEvidenceBadInput(t *testing.T) {
	ctx := context.Background()
	if _, err := New(Options{Monitor: &fakeMonitor{}}).GetEvidence(ctx, &agentapi.GetEvidenceRequest{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("no nonce: %v, want invalid argument", err)
	}
	if _, err := New(Options{}).GetEvidence(ctx, &agentapi.GetEvidenceRequest{Nonce: "n"}); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("no monitor: %v, want not implemented", err)
	}
}

func TestSetInitData(t *testing.T) {
	mon := &fakeMonitor{}
	s := New(Options{Monitor: mon})
	ctx := context.Background()
	data := []byte(`policy = "allow"`)
	if _, err := s.SetInitData(ctx, &agentapi.SetInitDataRequest{InitData: data}); err != nil {
		t.Fatal(err)
	}
	if d := sha256.Sum256(data); !bytes.Equal(mon.initData, d[:]) {
		t.Errorf("monitor got %x, want the data's SHA-256", mon.initData)
	}
	if _, err := s.SetInitData(ctx, &agentapi.SetInitDataRequest{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("empty init data: %v, want invalid argument", err)
	}
}
