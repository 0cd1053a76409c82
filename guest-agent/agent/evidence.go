package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	monitorapi "github.com/sccontainers/scc/api/monitor/v1"
	"github.com/sccontainers/scc/attest"
)

// Limits of the attestation requests.
const (
	maxNonce    = 1024
	maxInitData = 1 << 20
)

// GetEvidence returns the monitor's evidence over attest.ReportData(nonce,
// the agent's key).
func (s *Service) GetEvidence(ctx context.Context, req *agentapi.GetEvidenceRequest) (*agentapi.GetEvidenceResponse, error) {
	if len(req.GetNonce()) == 0 || len(req.GetNonce()) > maxNonce {
		return nil, fmt.Errorf("nonce of %d bytes, want 1 to %d: %w", len(req.GetNonce()), maxNonce, errdefs.ErrInvalidArgument)
	}
	if s.opts.Monitor == nil {
		return nil, fmt.Errorf("get evidence: no trusted monitor: %w", errdefs.ErrNotImplemented)
	}
	key, err := s.key()
	if err != nil {
		return nil, err
	}
	rd, err := attest.ReportData(req.GetNonce(), key.Public())
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("encode agent key: %w", err)
	}
	ev, err := s.opts.Monitor.Evidence(ctx, &monitorapi.EvidenceRequest{ReportData: rd[:]})
	if err != nil {
		return nil, fmt.Errorf("get evidence: %w", errgrpc.ToNative(err))
	}
	return &agentapi.GetEvidenceResponse{
		Tee:         ev.GetTee(),
		Evidence:    ev.GetEvidence(),
		PublicKey:   spki,
		TpmEkPublic: ev.GetTpmEkPublic(),
	}, nil
}

// SetInitData has the monitor bind the pod's init data.
func (s *Service) SetInitData(ctx context.Context, req *agentapi.SetInitDataRequest) (*emptypb.Empty, error) {
	if len(req.GetInitData()) == 0 || len(req.GetInitData()) > maxInitData {
		return nil, fmt.Errorf("init data of %d bytes, want 1 to %d: %w", len(req.GetInitData()), maxInitData, errdefs.ErrInvalidArgument)
	}
	if s.opts.Monitor == nil {
		return nil, fmt.Errorf("set init data: no trusted monitor: %w", errdefs.ErrNotImplemented)
	}
	d := sha256.Sum256(req.GetInitData())
	if _, err := s.opts.Monitor.BindInitData(ctx, &monitorapi.BindInitDataRequest{Digest: d[:]}); err != nil {
		return nil, fmt.Errorf("set init data: %w", errgrpc.ToNative(err))
	}
	return &emptypb.Empty{}, nil
}

// key returns the agent's key, making it on first use. It is made only
// when asked for, never at boot: a template VM is saved before anyone
// asks, and Restored forgets a key made before a restore, so no two VMs
// restored from one template share it.
func (s *Service) key() (*ecdsa.PrivateKey, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if s.identity == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("make agent key: %w", err)
		}
		s.identity = k
	}
	return s.identity, nil
}

// forgetKey drops the agent's key; the next use makes a new one.
func (s *Service) forgetKey() {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	s.identity = nil
}
