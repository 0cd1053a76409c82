package shim

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agent "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/internal/forward"
	"github.com/sccontainers/scc/snapshotter"
)

// Container annotations that name the image the guest of a confidential
// container pulls. They describe the container, not its VM, so they need
// no enable_annotations entry.
const (
	// AnnotationImage is the image reference (ctr and other clients that
	// do not set CRI's image name).
	AnnotationImage = "io.scc.image"
	// AnnotationImageDigest pins the image's manifest digest (sha256:...).
	AnnotationImageDigest = "io.scc.image.digest"
	// criImageName is the image reference CRI puts on every container.
	criImageName = "io.kubernetes.cri.image-name"
)

// imageAnnotations are the io.scc.* annotations of a container's image;
// applyAnnotations leaves them alone.
var imageAnnotations = []string{AnnotationImage, AnnotationImageDigest}

// ConfidentialConfig is the [confidential] section of config.toml.
type ConfidentialConfig struct {
	// Enabled makes every container of the runtime confidential (a pod
	// may also ask with the io.scc.confidential annotation): its guest
	// pulls the image and decrypts its encrypted layers itself, and the
	// host's rootfs is never shared with it.
	Enabled bool `toml:"enabled"`
	// Registry is the address (host:port) the shim dials for the guest's
	// "registry" target: every guest pull goes there, whatever registry
	// host the image reference names.
	Registry string `toml:"registry"`
	// RegistryPlainHTTP makes the guest speak HTTP to the registry.
	RegistryPlainHTTP bool `toml:"registry_plain_http"`
	// KBS is the address (host:port) of the key broker (scc-kbs), the
	// guest's "kbs" target.
	KBS string `toml:"kbs"`
	// KBSCertSHA256 pins the broker's certificate (hex SHA-256 of its
	// DER, as scc-kbs logs it).
	KBSCertSHA256 string `toml:"kbs_cert_sha256"`
	// KBSPlainHTTP makes the guest speak HTTP to the broker.
	KBSPlainHTTP bool `toml:"kbs_plain_http"`
	// JWEKeys are broker resources (repository/type/tag) holding the
	// private keys of layers encrypted to JWE recipients.
	JWEKeys []string `toml:"jwe_keys"`
	// SimAuthority is the directory of the simulated TEE's authority
	// (attest/sim), whose guest credentials a guest using the simulated
	// TEE (kernel parameter scc.tee=sim) signs its reports with. For
	// development and tests only: it offers no security.
	SimAuthority string `toml:"sim_authority"`
	// SimMeasurement is the hex MEASUREMENT (48 bytes) simulated reports
	// carry.
	SimMeasurement string `toml:"sim_measurement"`
	// LayerCache, if set, is the directory of the host's cache of
	// non-confidential layers of split images (imagesplit): an erofs
	// image and its dm-verity tree per layer, built once and attached
	// read-only to the VMs that need it, so that only the confidential
	// layers cross the registry channel.
	LayerCache string `toml:"layer_cache"`
	// LayerCacheMaxMiB bounds the cache: after adding a layer, the least
	// recently used ones go until it fits. 0: no bound.
	LayerCacheMaxMiB int64 `toml:"layer_cache_max_mib"`
}

func (c ConfidentialConfig) validate() error {
	var errs []error
	for name, addr := range map[string]string{"registry": c.Registry, "kbs": c.KBS} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("confidential.%s %q: want host:port: %w", name, addr, err))
		}
	}
	if c.Enabled && c.Registry == "" {
		errs = append(errs, errors.New("confidential.registry must be set when confidential.enabled"))
	}
	if c.KBSCertSHA256 != "" {
		if b, err := hex.DecodeString(strings.ReplaceAll(c.KBSCertSHA256, ":", "")); err != nil || len(b) != 32 {
			errs = append(errs, fmt.Errorf("confidential.kbs_cert_sha256 %q: want 32 hex bytes", c.KBSCertSHA256))
		}
	}
	for _, k := range c.JWEKeys {
		if p := strings.Split(k, "/"); len(p) != 3 || p[0] == "" || p[1] == "" || p[2] == "" {
			errs = append(errs, fmt.Errorf("confidential.jwe_keys: %q: want repository/type/tag", k))
		}
	}
	if c.LayerCacheMaxMiB < 0 {
		errs = append(errs, fmt.Errorf("confidential.layer_cache_max_mib %d: want 0 (no bound) or more", c.LayerCacheMaxMiB))
	}
	if c.SimMeasurement != "" {
		if b, err := hex.DecodeString(c.SimMeasurement); err != nil || len(b) != 48 {
			errs = append(errs, fmt.Errorf("confidential.sim_measurement %q: want 48 hex bytes", c.SimMeasurement))
		}
	}
	return errors.Join(errs...)
}

// targets are the forwarded channel's targets: names to addresses.
func (c ConfidentialConfig) targets() map[string]string {
	t := map[string]string{}
	if c.Registry != "" {
		t[forward.TargetRegistry] = c.Registry
	}
	if c.KBS != "" {
		t[forward.TargetKBS] = c.KBS
	}
	return t
}

// guestImage says which image the guest of a confidential container pulls
// and how it gets the keys of its encrypted layers. host, when the
// container's rootfs is the snapshotter's placeholder, is the image
// containerd resolved and built the container's spec from: the guest
// pulls exactly that manifest, and checks that its config is the one the
// spec came from.
func (c ConfidentialConfig) guestImage(spec *specs.Spec, host *hostImage) (*agent.GuestImage, error) {
	if c.Registry == "" {
		return nil, fmt.Errorf("confidential container: the runtime configuration has no confidential.registry to pull from: %w", errdefs.ErrFailedPrecondition)
	}
	ref := spec.Annotations[AnnotationImage]
	if ref == "" {
		ref = spec.Annotations[criImageName]
	}
	if ref == "" && host != nil {
		ref = host.name
	}
	if ref == "" {
		return nil, fmt.Errorf("confidential container: no image reference (annotation %s or %s): %w", AnnotationImage, criImageName, errdefs.ErrInvalidArgument)
	}
	img := &agent.GuestImage{
		Reference:         ref,
		RegistryPlainHttp: c.RegistryPlainHTTP,
		KeyBroker: &agent.KeyBroker{
			CertSha256:      c.KBSCertSHA256,
			PlainHttp:       c.KBSPlainHTTP,
			JweKeyResources: c.JWEKeys,
		},
	}
	if d := spec.Annotations[AnnotationImageDigest]; d != "" {
		if _, err := digest.Parse(d); err != nil {
			return nil, fmt.Errorf("annotation %s: %q: %v: %w", AnnotationImageDigest, d, err, errdefs.ErrInvalidArgument)
		}
		img.ManifestDigest = d
	}
	if host != nil {
		if err := bindHostImage(img, *host); err != nil {
			return nil, err
		}
	}
	if c.SimAuthority != "" {
		a, err := sim.NewAuthority(c.SimAuthority)
		if err != nil {
			return nil, err
		}
		img.KeyBroker.SimCredentials = a.GuestCredentials()
		img.KeyBroker.SimMeasurement, _ = hex.DecodeString(c.SimMeasurement)
	}
	return img, nil
}

// errImageMismatch is an image the annotations name that is not the one
// containerd built the container's spec from.
var errImageMismatch = errors.New("the image to pull in the guest is not the image containerd built the container from")

// bindHostImage pins the guest's pull to the manifest (or index)
// containerd resolved, and passes the config digest its spec came from.
// The host built the spec without the image's files (the snapshotter
// gives it none), so the guest looks the user's groups up.
func bindHostImage(img *agent.GuestImage, host hostImage) error {
	if img.ManifestDigest != "" && img.ManifestDigest != host.target.String() {
		return fmt.Errorf("%w: annotation %s pins %s, containerd resolved %s: %w", errImageMismatch, AnnotationImageDigest, img.ManifestDigest, host.target, errdefs.ErrFailedPrecondition)
	}
	if want, err := reference.ParseDockerRef(img.Reference); err == nil {
		if got, err := reference.ParseDockerRef(host.name); err == nil && got.Name() != want.Name() {
			return fmt.Errorf("%w: %s is to be pulled, containerd's image is %s: %w", errImageMismatch, want.Name(), got.Name(), errdefs.ErrFailedPrecondition)
		}
	}
	img.ManifestDigest = host.target.String()
	img.ConfigDigest = host.config.String()
	img.LookupGroups = true
	return nil
}

// errGuestPullNotConfidential is a container whose rootfs is the
// snapshotter's placeholder but whose runtime does not make it
// confidential: nothing would give it its image.
var errGuestPullNotConfidential = fmt.Errorf("its image was left to the guest by the %q snapshotter, but the container is not confidential: give the runtime handler that uses this snapshotter a configuration with confidential.enabled = true: %w", snapshotter.Name, errdefs.ErrFailedPrecondition)

// guestPulledRootfs reports whether containerd's rootfs is the
// snapshotter's placeholder.
func guestPulledRootfs(rootfs []*types.Mount) bool {
	return len(rootfs) == 1 && rootfs[0].Type == "bind" && snapshotter.GuestPulled(rootfs[0].Source)
}
