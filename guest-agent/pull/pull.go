// Package pull fetches a confidential container's image inside the guest:
// from the registry the host forwards (internal/forward), checking every
// blob against the manifest, decrypting encrypted layers with keys the key
// broker releases to this guest after attestation, and unpacking each
// layer into guest memory, ready to be stacked with overlayfs. The host
// relays only ciphertext and digests it cannot forge.
//
// go-containerregistry's pkg/v1/remote speaks the registry protocol and
// checks each blob's digest and size as it reads it; the manifest itself
// is checked against the pinned digest when one is given (the image is
// then pulled by that digest). Encrypted layers are OCI image encryption
// (github.com/containers/ocicrypt, through imagesplit/layercrypt): a layer
// key wrapped either for a key-encryption key the broker serves at a
// kbs:///repository/type/tag reference (the Confidential Containers
// annotation), or to JWE recipients whose private key the broker holds.
// Each plain layer is checked against the config's diff ID before the
// container may use it.
package pull

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/internal/forward"
)

// ErrDigestMismatch is a blob or a layer whose content is not what the
// manifest (or the config's diff IDs) say: a registry, or a host between
// it and the guest, changed it.
var ErrDigestMismatch = errors.New("digest mismatch")

// Dialer opens a stream of the forwarded channel to a target.
type Dialer interface {
	Dial(ctx context.Context, target string) (net.Conn, error)
}

// Recorder binds an image the guest is about to run into its attestation
// evidence.
type Recorder interface {
	RecordImage(ctx context.Context, img attest.Image) error
}

// Puller pulls images through the forwarded channel.
type Puller struct {
	Channel Dialer
	// Recorder, if set, is told of the image once its manifest and config
	// are checked, before any layer is fetched (and so before any key is
	// asked for); an error stops the pull.
	Recorder Recorder
	// Keys gets the keys of encrypted layers; nil refuses encrypted
	// layers.
	Keys KeyGetter
	// Disks are the layer disks the host attached: erofs image digest
	// (imagesplit's io.scc.erofs.digest) to the disk's virtio serial. A
	// layer whose integrity descriptor names one is mounted from it under
	// dm-verity instead of being pulled; nothing of the disk is trusted
	// but what the manifest's root hash checks.
	Disks map[string]string
	// SysBlock is where disks are looked up; "" means SysBlockDir.
	SysBlock string
}

// ErrConfigMismatch is an image whose config is not the one the host
// built the container's spec from.
var ErrConfigMismatch = errors.New("image config mismatch")

// Image is a pulled image, unpacked below its directory.
type Image struct {
	Dir string
	// Layers are the unpacked layer directories, bottom layer first.
	Layers []string
	// Reference is the reference the image was pulled by.
	Reference string
	// ManifestDigest is the digest of the manifest that was pulled.
	ManifestDigest v1.Hash
	// IndexDigest is the digest of the index the manifest was chosen
	// from, when the reference named an index; zero otherwise.
	IndexDigest v1.Hash
	// ConfigDigest is the digest of the image's config.
	ConfigDigest v1.Hash
	// Pinned says the image was pulled by digest, not by tag.
	Pinned bool
	// Bytes is the size of the blobs that were fetched.
	Bytes int64
	// DiskLayers counts the layers mounted from the host's disks.
	DiskLayers int

	mounts []string // erofs mounts of layer disks
	dms    []string // their dm-verity devices
}

// Claim is what the guest states about the image in its attestation
// evidence.
func (img *Image) Claim() attest.Image {
	c := attest.Image{
		Manifest:  img.ManifestDigest.String(),
		Config:    img.ConfigDigest.String(),
		Reference: img.Reference,
		Pinned:    img.Pinned,
	}
	if img.IndexDigest != (v1.Hash{}) {
		c.Index = img.IndexDigest.String()
	}
	return c
}

// Close unmounts the layer disks and removes the image's directory. The
// container's rootfs above it must be unmounted first.
func (img *Image) Close() error {
	var errs []error
	for i := len(img.mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(img.mounts[i], 0); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount layer disk: %w", err))
		}
	}
	for _, name := range img.dms {
		if err := closeDM(name); err != nil {
			errs = append(errs, fmt.Errorf("close dm-verity device %s: %w", name, err))
		}
	}
	if len(errs) > 0 {
		// Leave the directory: removing it would descend into mounts.
		return errors.Join(errs...)
	}
	return os.RemoveAll(img.Dir)
}

// Pull pulls the image req names into dir, which it creates: one
// directory per layer (dir/layers/<index>) whose whiteouts are overlayfs
// whiteouts. On error nothing of it is left.
func (p *Puller) Pull(ctx context.Context, req *agentapi.GuestImage, dir string) (_ *Image, retErr error) {
	ref, err := reference(req)
	if err != nil {
		return nil, err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("image", ref.String()))
	tr := p.transport()
	defer tr.CloseIdleConnections()
	start := time.Now()
	// remote checks what it fetches by digest (a pinned manifest or
	// index, the platform's manifest of an index, the config) against
	// that digest.
	desc, err := remote.Get(ref, remote.WithContext(ctx), remote.WithTransport(tr),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))
	if err != nil {
		return nil, fmt.Errorf("pull %s: fetch manifest: %w", ref, err)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("pull %s: fetch manifest: %w", ref, err)
	}
	mdigest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("pull %s: manifest digest: %w", ref, err)
	}
	out := &Image{Dir: dir, Reference: req.GetReference(), ManifestDigest: mdigest}
	if desc.MediaType.IsIndex() {
		out.IndexDigest = desc.Digest
	}
	_, out.Pinned = ref.(name.Digest)
	if out.ConfigDigest, err = img.ConfigName(); err != nil {
		return nil, fmt.Errorf("pull %s: config digest: %w", ref, err)
	}
	if want := req.GetConfigDigest(); want != "" && want != out.ConfigDigest.String() {
		return nil, fmt.Errorf("pull %s: %w: the image's config is %s, the host built the container from %s: %w",
			ref, ErrConfigMismatch, out.ConfigDigest, want, errdefs.ErrFailedPrecondition)
	}
	if p.Recorder != nil {
		if err := p.Recorder.RecordImage(ctx, out.Claim()); err != nil {
			return nil, fmt.Errorf("pull %s: record the image in the attestation evidence: %w", ref, err)
		}
	}
	manifest, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("pull %s: read manifest: %w", ref, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("pull %s: read config: %w", ref, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(manifest.Layers) {
		return nil, fmt.Errorf("pull %s: config has %d diff ids for %d layers: %w", ref, len(cfg.RootFS.DiffIDs), len(manifest.Layers), errdefs.ErrInvalidArgument)
	}

	if err := os.MkdirAll(filepath.Join(dir, "layers"), 0o700); err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	defer func() {
		if retErr != nil {
			out.Close()
		}
	}()
	for i, desc := range manifest.Layers {
		ld := filepath.Join(dir, "layers", strconv.Itoa(i))
		if err := os.Mkdir(ld, 0o755); err != nil {
			return nil, fmt.Errorf("pull %s: layer %d: %w", ref, i, err)
		}
		if ok, err := p.fromDisk(ctx, out, i, desc, ld); err != nil {
			return nil, fmt.Errorf("pull %s: layer %d (%s): %w", ref, i, desc.Digest, err)
		} else if ok {
			out.Layers = append(out.Layers, ld)
			out.DiskLayers++
			continue
		}
		l, err := img.LayerByDigest(desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("pull %s: layer %d: %w", ref, i, err)
		}
		lu := layerUnpack{index: i, desc: desc, diffID: cfg.RootFS.DiffIDs[i], keys: p.Keys}
		if err := lu.unpack(ctx, l, ld); err != nil {
			return nil, fmt.Errorf("pull %s: layer %d (%s): %w", ref, i, desc.Digest, err)
		}
		out.Layers = append(out.Layers, ld)
		out.Bytes += desc.Size
	}
	log.G(ctx).WithField("manifest", mdigest.String()).WithField("layers", len(out.Layers)).WithField("disk_layers", out.DiskLayers).
		WithField("bytes", out.Bytes).WithField("duration", time.Since(start)).Info("image pulled")
	return out, nil
}

// fromDisk mounts layer i from the host's disk when the host attached one
// for its integrity descriptor; false when it did not.
func (p *Puller) fromDisk(ctx context.Context, img *Image, i int, desc v1.Descriptor, dir string) (bool, error) {
	in, ok, err := layerIntegrity(desc)
	if err != nil || !ok {
		return false, err
	}
	serial, ok := p.Disks[in.erofsDigest]
	if !ok {
		return false, nil
	}
	sys := p.SysBlock
	if sys == "" {
		sys = SysBlockDir
	}
	dev, err := findDisk(ctx, sys, serial)
	if err != nil {
		return false, err
	}
	name := "scc-" + filepath.Base(img.Dir) + "-" + strconv.Itoa(i)
	if err := mountDisk(ctx, dev, name, in, dir); err != nil {
		return false, err
	}
	img.dms = append(img.dms, name)
	img.mounts = append(img.mounts, dir)
	return true, nil
}

// reference is the image to pull: by the pinned digest when there is one.
func reference(req *agentapi.GuestImage) (name.Reference, error) {
	var opts []name.Option
	if req.GetRegistryPlainHttp() {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(req.GetReference(), opts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %v: %w", req.GetReference(), err, errdefs.ErrInvalidArgument)
	}
	pin := req.GetManifestDigest()
	if pin == "" {
		return ref, nil
	}
	if _, err := v1.NewHash(pin); err != nil {
		return nil, fmt.Errorf("pinned manifest digest %q: %v: %w", pin, err, errdefs.ErrInvalidArgument)
	}
	if d, ok := ref.(name.Digest); ok && d.DigestStr() != pin {
		return nil, fmt.Errorf("image reference %s names digest %s, not the pinned %s: %w", ref, d.DigestStr(), pin, errdefs.ErrInvalidArgument)
	}
	// remote checks that the manifest it gets hashes to this digest.
	d, err := name.NewDigest(ref.Context().Name()+"@"+pin, opts...)
	if err != nil {
		return nil, fmt.Errorf("pinned manifest digest %q: %v: %w", pin, err, errdefs.ErrInvalidArgument)
	}
	return d, nil
}

// transport reaches the registry through the channel, whatever address
// the reference names; TLS, if the registry speaks it, is end to end.
func (p *Puller) transport() *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return p.Channel.Dial(ctx, forward.TargetRegistry)
		},
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
	}
}

// isEncrypted reports whether a layer media type is an encrypted one.
func isEncrypted(mt string) bool { return strings.HasSuffix(mt, "+encrypted") }
