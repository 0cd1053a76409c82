package agent

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	monitorapi "github.com/sccontainers/scc/api/monitor/v1"
	"github.com/sccontainers/scc/attest"
)

// imageMonitor binds images, or fails to with err.
type imageMonitor struct {
	monitorapi.MonitorService
	err   error
	bound []*monitorapi.BindImageRequest
}

func (m *imageMonitor) BindImage(_ context.Context, req *monitorapi.BindImageRequest) (*emptypb.Empty, error) {
	if m.err != nil {
		return nil, errgrpc.ToGRPC(m.err)
	}
	m.bound = append(m.bound, req)
	return &emptypb.Empty{}, nil
}

func TestImageRecorder(t *testing.T) {
	ctx := context.Background()
	img := attest.Image{Manifest: "sha256:" + strings.Repeat("a", 64), Index: "sha256:" + strings.Repeat("b", 64),
		Config: "sha256:" + strings.Repeat("c", 64), Reference: "r/app:v1", Pinned: true}

	m := &imageMonitor{}
	s := New(Options{Monitor: m})
	if err := (imageRecorder{s}).RecordImage(ctx, img); err != nil {
		t.Fatal(err)
	}
	if len(m.bound) != 1 || m.bound[0].GetManifestDigest() != img.Manifest || m.bound[0].GetIndexDigest() != img.Index || !m.bound[0].GetPinned() {
		t.Errorf("monitor bound %v", m.bound)
	}
	if c := s.runtimeClaims(); len(c.Images) != 1 || c.Images[0] != img {
		t.Errorf("claims %+v", c)
	}

	// A guest without a TPM: its claims still carry the image.
	s = New(Options{Monitor: &imageMonitor{err: errdefs.ErrFailedPrecondition}})
	if err := (imageRecorder{s}).RecordImage(ctx, img); err != nil {
		t.Fatal(err)
	}
	if c := s.runtimeClaims(); len(c.Images) != 1 {
		t.Errorf("claims without a TPM: %+v", c)
	}

	// A monitor that fails otherwise stops the pull.
	s = New(Options{Monitor: &imageMonitor{err: errors.New("tpm gone")}})
	if err := (imageRecorder{s}).RecordImage(ctx, img); err == nil || !strings.Contains(err.Error(), "tpm gone") {
		t.Errorf("failing monitor: %v", err)
	}
	if c := s.runtimeClaims(); len(c.Images) != 0 {
		t.Errorf("an image the monitor did not bind is claimed: %+v", c)
	}
	bad := img
	bad.Config = "sha256:1"
	if err := (imageRecorder{New(Options{})}).RecordImage(ctx, bad); !errors.Is(err, attest.ErrInvalidClaims) {
		t.Errorf("malformed image: %v", err)
	}
}
