package monitor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	monitorapi "github.com/sccontainers/scc/api/monitor/v1"
	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/snp"
	"github.com/sccontainers/scc/attest/source"
	"github.com/sccontainers/scc/attest/tdx"
	"github.com/sccontainers/scc/attest/vtpm"
)

// service implements the monitor's API for one agent.
type service struct {
	meter  *meter
	source source.Kind // the guest's evidence source; "" for none
	sup    *supervisor // nil in tests without one
}

var _ monitorapi.MonitorService = (*service)(nil)

func (s *service) Info(ctx context.Context, _ *emptypb.Empty) (*monitorapi.InfoResponse, error) {
	return &monitorapi.InfoResponse{EvidenceSource: string(s.source), Generation: s.meter.currentGeneration()}, nil
}

func (s *service) Evidence(ctx context.Context, req *monitorapi.EvidenceRequest) (*monitorapi.EvidenceResponse, error) {
	if len(req.GetReportData()) != 64 {
		return nil, fmt.Errorf("report data is %d bytes, want 64: %w", len(req.GetReportData()), errdefs.ErrInvalidArgument)
	}
	rd := [64]byte(req.GetReportData())
	resp := &monitorapi.EvidenceResponse{Tee: string(s.source)}
	var err error
	switch s.source {
	case source.VTPM:
		var ev *vtpm.Evidence
		if ev, resp.TpmEkPublic, err = s.meter.evidence(ctx, rd); err == nil {
			resp.Evidence, err = ev.MarshalJSON()
		}
	case source.SNP:
		resp.Evidence, err = (&snp.Attester{}).Evidence(ctx, rd)
	case source.TDX:
		resp.Evidence, err = (&tdx.Attester{}).Evidence(ctx, rd)
	default:
		return nil, fmt.Errorf("no evidence from source %q: %w", s.source, errdefs.ErrNotImplemented)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s evidence: %w", s.source, err)
	}
	return resp, nil
}

func (s *service) BindInitData(ctx context.Context, req *monitorapi.BindInitDataRequest) (*emptypb.Empty, error) {
	if len(req.GetDigest()) != 32 {
		return nil, fmt.Errorf("init data digest is %d bytes, want 32: %w", len(req.GetDigest()), errdefs.ErrInvalidArgument)
	}
	switch err := s.meter.bindInitData([32]byte(req.GetDigest())); {
	case errors.Is(err, errNoTPM):
		return nil, fmt.Errorf("bind init data: %w: %w", err, errdefs.ErrFailedPrecondition)
	case errors.Is(err, errInitDataBound):
		return nil, fmt.Errorf("bind init data: %w: %w", err, errdefs.ErrAlreadyExists)
	case err != nil:
		return nil, fmt.Errorf("bind init data: %w", err)
	}
	log.G(ctx).WithField("digest", fmt.Sprintf("%x", req.GetDigest())).Info("init data bound")
	return &emptypb.Empty{}, nil
}

func (s *service) BindImage(ctx context.Context, req *monitorapi.BindImageRequest) (*emptypb.Empty, error) {
	img := attest.Image{
		Manifest:  req.GetManifestDigest(),
		Index:     req.GetIndexDigest(),
		Config:    req.GetConfigDigest(),
		Reference: req.GetReference(),
		Pinned:    req.GetPinned(),
	}
	switch err := s.meter.bindImage(img); {
	case errors.Is(err, errNoTPM):
		return nil, fmt.Errorf("bind image: %w: %w", err, errdefs.ErrFailedPrecondition)
	case errors.Is(err, attest.ErrInvalidClaims):
		return nil, fmt.Errorf("bind image: %w: %w", err, errdefs.ErrInvalidArgument)
	case err != nil:
		return nil, fmt.Errorf("bind image: %w", err)
	}
	log.G(ctx).WithField("manifest", img.Manifest).WithField("reference", img.Reference).Info("image bound")
	return &emptypb.Empty{}, nil
}

func (s *service) Restored(ctx context.Context, req *monitorapi.RestoredRequest) (*emptypb.Empty, error) {
	var r vtpm.RestoreEvent
	for _, f := range []struct {
		name string
		b    []byte
		dst  *[32]byte
	}{{"snapshot digest", req.GetSnapshotDigest(), &r.Snapshot}, {"nonce", req.GetNonce(), &r.Nonce}} {
		switch len(f.b) {
		case 0: // not given: recorded as zero
		case 32:
			*f.dst = [32]byte(f.b)
		default:
			return nil, fmt.Errorf("restore %s is %d bytes, want 32: %w", f.name, len(f.b), errdefs.ErrInvalidArgument)
		}
	}
	if err := s.meter.restored(ctx, r); err != nil {
		return nil, fmt.Errorf("record restore: %w", err)
	}
	log.G(ctx).WithField("snapshot", fmt.Sprintf("%x", r.Snapshot)).Info("restore recorded")
	return &emptypb.Empty{}, nil
}

func (s *service) Clean(ctx context.Context, req *monitorapi.CleanRequest) (*emptypb.Empty, error) {
	if len(req.GetNonce()) != 32 {
		return nil, fmt.Errorf("clean nonce is %d bytes, want 32: %w", len(req.GetNonce()), errdefs.ErrInvalidArgument)
	}
	if s.sup == nil {
		return nil, fmt.Errorf("clean: %w", errdefs.ErrNotImplemented)
	}
	if err := s.sup.requestClean(ctx, [32]byte(req.GetNonce())); err != nil {
		return nil, fmt.Errorf("clean: %w: %w", err, errdefs.ErrFailedPrecondition)
	}
	log.G(ctx).Info("clean requested: waiting for the agent to end")
	return &emptypb.Empty{}, nil
}

// serve serves svc on conn, the agent's connection, until it closes or
// ctx ends.
func serve(ctx context.Context, svc monitorapi.MonitorService, conn net.Conn) error {
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(intercept))
	if err != nil {
		return fmt.Errorf("new ttrpc server: %w", err)
	}
	monitorapi.RegisterMonitorService(srv, svc)
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	err = srv.Serve(ctx, &connListener{conn: conn, closed: make(chan struct{})})
	if errors.Is(err, ttrpc.ErrServerClosed) {
		return nil
	}
	return err
}

func intercept(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	start := time.Now()
	resp, err := method(ctx, unmarshal)
	entry := log.G(ctx).WithField("method", path.Base(info.FullMethod)).WithField("duration", time.Since(start))
	if err != nil {
		entry.WithError(err).Warn("monitor request failed")
		return resp, errgrpc.ToGRPC(err)
	}
	entry.Debug("monitor request done")
	return resp, nil
}

// connListener hands out one connection, then blocks until closed.
type connListener struct {
	mu     sync.Mutex
	conn   net.Conn // nil once accepted; guarded by mu
	once   sync.Once
	closed chan struct{}
}

func (l *connListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.UnixAddr{Name: "monitor", Net: "unix"} }
