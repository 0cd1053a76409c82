package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	monitorapi "github.com/sccontainers/scc/api/monitor/v1"
	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/client"
	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
	"github.com/sccontainers/scc/attest/source"
	"github.com/sccontainers/scc/attest/tdx"
	"github.com/sccontainers/scc/guest-agent/pull"
	"github.com/sccontainers/scc/internal/forward"
)

// DefaultImageDir holds the images pulled in the guest, one directory per
// container: on the guest's /run, a tmpfs, so in guest memory.
const DefaultImageDir = "/run/scc/images"

// checkImage refuses an image request that also names a rootfs: a
// confidential container's root is what its guest pulled, nothing else.
func checkImage(req *agentapi.CreateContainerRequest) error {
	img := req.GetImage()
	if img == nil {
		return checkRootfs(req.GetRootfs())
	}
	if req.GetRootfs() != nil {
		return invalid("both an image to pull and a rootfs are given")
	}
	if img.GetReference() == "" {
		return invalid("image to pull has no reference")
	}
	return nil
}

// pullRootfs pulls a confidential container's image into guest memory and
// returns the overlay mount of its root: the image's layers, read-only,
// under a writable layer. The returned image holds it all; it must be
// closed once the rootfs is unmounted.
func (s *Service) pullRootfs(ctx context.Context, id string, img *agentapi.GuestImage) (_ *agentapi.Mount, _ *pull.Image, retErr error) {
	ch, err := s.channel(ctx)
	if err != nil {
		return nil, nil, err
	}
	p := &pull.Puller{Channel: ch, Disks: img.GetLayerDisks(), Recorder: imageRecorder{s}}
	if kb := img.GetKeyBroker(); kb != nil {
		p.Keys = &pull.BrokerKeys{
			Broker:       &guestBroker{channel: ch, kb: kb, source: s.opts.EvidenceSource, monitor: s.opts.Monitor, claims: s.runtimeClaims},
			JWEResources: kb.GetJweKeyResources(),
		}
	}
	dir := filepath.Join(s.opts.ImageDir, id)
	if err := os.MkdirAll(s.opts.ImageDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("image dir: %w", err)
	}
	pulled, err := p.Pull(ctx, img, dir)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if retErr != nil {
			pulled.Close()
		}
	}()
	lower := slices.Clone(pulled.Layers)
	slices.Reverse(lower) // overlayfs lists the top layer first
	upper, work, root := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "rootfs")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, nil, fmt.Errorf("writable layer: %w", err)
		}
	}
	log.G(ctx).WithField("manifest", pulled.ManifestDigest.String()).Info("confidential image ready")
	return &agentapi.Mount{
		Type:    "overlay",
		Source:  "overlay",
		Target:  root,
		Options: []string{"lowerdir=" + strings.Join(lower, ":"), "upperdir=" + upper, "workdir=" + work},
	}, pulled, nil
}

// channel returns the forwarded channel, opening the port on first use
// and again after the host went away.
func (s *Service) channel(ctx context.Context) (*forward.Client, error) {
	s.forwardMu.Lock()
	defer s.forwardMu.Unlock()
	if s.forward != nil {
		select {
		case <-s.forward.Closed():
			s.forward = nil
		default:
			return s.forward, nil
		}
	}
	if s.opts.OpenForward == nil {
		return nil, fmt.Errorf("this guest has no forwarded channel to pull images through: %w", errdefs.ErrNotImplemented)
	}
	port, err := s.opts.OpenForward(ctx)
	if err != nil {
		return nil, fmt.Errorf("open forwarded channel: %w", err)
	}
	c, err := forward.NewClient(port)
	if err != nil {
		port.Close()
		return nil, err
	}
	s.forward = c
	return c, nil
}

// guestBroker is the key broker as this guest reaches it: through the
// channel, attesting with the guest's evidence source. The attester is
// made when a key is first needed: images without encrypted layers need
// none.
type guestBroker struct {
	channel pull.Dialer
	kb      *agentapi.KeyBroker
	source  string
	monitor monitorapi.MonitorService
	// claims are the guest's runtime claims when a session starts: the
	// images pulled so far.
	claims func() *attest.RuntimeClaims
}

func (g *guestBroker) GetResource(ctx context.Context, path string) ([]byte, error) {
	a, err := attester(g.source, g.kb, g.monitor)
	if err != nil {
		return nil, err
	}
	b := pull.NewBroker(g.channel, g.kb.GetCertSha256(), g.kb.GetPlainHttp(), a)
	b.Client.Claims = g.claims()
	return b.GetResource(ctx, path)
}

// attester returns the evidence provider of the guest's evidence source.
func attester(src string, kb *agentapi.KeyBroker, monitor monitorapi.MonitorService) (client.Attester, error) {
	switch source.Kind(src) {
	case source.SNP:
		return &snp.Attester{}, nil
	case source.TDX:
		return &tdx.Attester{}, nil
	case source.VTPM:
		if monitor == nil {
			return nil, fmt.Errorf("the guest's vTPM is reached through its monitor, and there is none: %w", errdefs.ErrFailedPrecondition)
		}
		return monitorAttester{monitor}, nil
	case source.Sim:
		if len(kb.GetSimCredentials()) == 0 {
			return nil, fmt.Errorf("the guest uses the simulated TEE but the host gave no simulated credentials (confidential.sim_authority): %w", errdefs.ErrFailedPrecondition)
		}
		var cfg sim.Config
		if m := kb.GetSimMeasurement(); len(m) > 0 {
			if len(m) != len(cfg.Measurement) {
				return nil, invalid("simulated measurement of %d bytes, want %d", len(m), len(cfg.Measurement))
			}
			copy(cfg.Measurement[:], m)
		}
		return sim.NewAttester(kb.GetSimCredentials(), cfg)
	case "":
		return nil, fmt.Errorf("the guest has no attestation evidence source, so the key broker cannot release image keys to it: %w", errdefs.ErrFailedPrecondition)
	default:
		return nil, fmt.Errorf("evidence source %q cannot get image keys yet: %w", src, errdefs.ErrNotImplemented)
	}
}

// monitorAttester gets the vTPM evidence of the guest from its monitor,
// which alone reaches the TPM: a quote of the monitor's PCRs (the image
// PCR among them) with its event log.
type monitorAttester struct{ m monitorapi.MonitorService }

func (monitorAttester) TEE() string { return string(source.VTPM) }

func (a monitorAttester) Evidence(ctx context.Context, reportData [64]byte) ([]byte, error) {
	ev, err := a.m.Evidence(ctx, &monitorapi.EvidenceRequest{ReportData: reportData[:]})
	if err != nil {
		return nil, fmt.Errorf("monitor evidence: %w", errgrpc.ToNative(err))
	}
	return ev.GetEvidence(), nil
}

// imageRecorder binds each image the guest pulls into its evidence before
// any of the image's keys is asked for: the monitor extends it into the
// image PCR when the guest has a TPM, and every later key broker session
// claims it (RuntimeClaims, bound into REPORT_DATA).
type imageRecorder struct{ s *Service }

func (r imageRecorder) RecordImage(ctx context.Context, img attest.Image) error {
	if err := img.Validate(); err != nil {
		return err
	}
	if m := r.s.opts.Monitor; m != nil {
		_, err := m.BindImage(ctx, &monitorapi.BindImageRequest{
			ManifestDigest: img.Manifest, IndexDigest: img.Index, ConfigDigest: img.Config,
			Reference: img.Reference, Pinned: img.Pinned,
		})
		// Without a TPM there is no PCR to extend: the claims bind it.
		if err != nil && !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) {
			return fmt.Errorf("bind image: %w", errgrpc.ToNative(err))
		}
	}
	r.s.imagesMu.Lock()
	r.s.images = append(r.s.images, img)
	r.s.imagesMu.Unlock()
	log.G(ctx).WithField("manifest", img.Manifest).WithField("pinned", img.Pinned).Info("image bound to the attestation evidence")
	return nil
}

// runtimeClaims returns the guest's runtime claims: the images it pulled.
func (s *Service) runtimeClaims() *attest.RuntimeClaims {
	s.imagesMu.Lock()
	defer s.imagesMu.Unlock()
	return &attest.RuntimeClaims{Images: slices.Clone(s.images)}
}
