// Package imagesplit splits an OCI image into a confidential part, whose
// layers are encrypted with ocicrypt so that only an attested guest can
// read them, and a non-confidential part, whose layers stay in the clear
// but gain an integrity descriptor (an erofs image under a dm-verity hash
// tree, its root hash in the manifest) so the guest can mount them from
// an untrusted host and still detect any change.
//
// go-containerregistry reads and writes the images: its v1.Image is lazy
// (a layer is read only when needed), the same interface serves OCI
// layouts, tarballs and registries (pkg/v1/remote), and pkg/v1/mutate
// rebuilds a manifest with new layer descriptors without hand-written
// JSON. containerd's content store would also do, but would tie this tool
// to a running containerd.
//
// # Keys
//
// With a KBS key (layercrypt.KBSKey) the 32-byte key-encryption key must
// reach the key broker before the image runs: POST its raw bytes to
// /kbs/v0/resource/REPO/TYPE/TAG (the kid's path) with "Authorization:
// Bearer" and an admin JWT from kbs.NewAdminToken (see attest/kbs). With a
// JWE recipient the broker holds the matching private key instead.
package imagesplit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sccontainers/scc/imagesplit/erofs"
	"github.com/sccontainers/scc/imagesplit/layercrypt"
	"github.com/sccontainers/scc/imagesplit/verity"
)

// Options say how to split.
type Options struct {
	Rule Rule
	// Recipients can unwrap the keys of the confidential layers.
	Recipients []layercrypt.Recipient
	// IntegrityDir receives, for each non-confidential layer, the erofs
	// image <hex>.erofs and its hash tree <hex>.verity, <hex> being the
	// image's SHA-256. The host serves them to the guest.
	IntegrityDir string
	// WorkDir holds temporary files; "" means os.TempDir().
	WorkDir string
	// Salt fixes the dm-verity salt of every layer; nil draws a random one
	// per layer.
	Salt []byte
	// Progress, if set, receives one line per step of long work.
	Progress io.Writer
}

// LayerReport says what became of one layer.
type LayerReport struct {
	Index        int
	Confidential bool
	Digest       v1.Hash // of the layer blob in the new image
	DiffID       v1.Hash
	// Set for non-confidential layers.
	RootHash    string // hex
	Salt        string // hex
	ErofsDigest v1.Hash
	ErofsPath   string
	VerityPath  string
}

// Result is a split image. Its encrypted layers live in temporary files
// until Close: write the image out before closing.
type Result struct {
	Image  v1.Image
	Layers []LayerReport
	tmp    string
}

// Close removes the temporary files.
func (r *Result) Close() error { return os.RemoveAll(r.tmp) }

// ErrNoRecipient reports confidential layers and nobody to encrypt them to.
var ErrNoRecipient = errors.New("confidential layers need a recipient")

// Run splits the image from src and writes it to dst.
func Run(ctx context.Context, src Source, dst Sink, o Options) ([]LayerReport, error) {
	img, err := src.Image(ctx)
	if err != nil {
		return nil, err
	}
	res, err := Split(ctx, img, o)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	o.progress("writing image")
	if err := dst.Write(ctx, res.Image); err != nil {
		return nil, err
	}
	return res.Layers, nil
}

// Split encrypts the layers o.Rule selects and builds integrity
// descriptors for the others.
func Split(ctx context.Context, img v1.Image, o Options) (_ *Result, err error) {
	if o.Rule == nil {
		return nil, errors.New("split: no rule")
	}
	if o.IntegrityDir == "" {
		return nil, errors.New("split: no integrity dir")
	}
	if err := os.MkdirAll(o.IntegrityDir, 0o755); err != nil {
		return nil, fmt.Errorf("create integrity dir: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	manifest, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	o.progress(fmt.Sprintf("selecting confidential layers among %d", len(layers)))
	sel, err := o.Rule.Select(ctx, layers)
	if err != nil {
		return nil, fmt.Errorf("apply rule: %w", err)
	}
	tmp, err := os.MkdirTemp(o.WorkDir, "scc-imagesplit-")
	if err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	res := &Result{tmp: tmp}
	defer func() {
		if err != nil {
			res.Close()
		}
	}()

	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		desc := manifest.Layers[i]
		start := time.Now()
		var rep LayerReport
		if sel[i] {
			if len(o.Recipients) == 0 {
				return nil, ErrNoRecipient
			}
			o.progress(fmt.Sprintf("layer %d/%d %s: encrypting", i+1, len(layers), short(desc.Digest)))
			adds[i], rep, err = encryptLayer(l, desc, o.Recipients, tmp)
		} else {
			o.progress(fmt.Sprintf("layer %d/%d %s: building erofs and dm-verity tree", i+1, len(layers), short(desc.Digest)))
			adds[i], rep, err = integrityLayer(ctx, l, desc, o)
		}
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		rep.Index = i
		res.Layers = append(res.Layers, rep)
		o.progress(fmt.Sprintf("layer %d/%d %s: done in %s", i+1, len(layers), short(rep.Digest), time.Since(start).Round(time.Millisecond)))
	}

	// The new manifest is OCI whatever the input: encrypted layer media
	// types exist only there. The original config is kept whole (its
	// rootfs diff IDs are those of the plain layers, unchanged).
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	out, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, fmt.Errorf("assemble image: %w", err)
	}
	out, err = mutate.ConfigFile(out, cfg)
	if err != nil {
		return nil, fmt.Errorf("assemble image: %w", err)
	}
	if len(manifest.Annotations) > 0 {
		out = mutate.Annotations(out, manifest.Annotations).(v1.Image)
	}
	res.Image = out
	return res, nil
}

func encryptLayer(l v1.Layer, desc v1.Descriptor, rcpts []layercrypt.Recipient, tmp string) (mutate.Addendum, LayerReport, error) {
	diffID, err := l.DiffID()
	if err != nil {
		return mutate.Addendum{}, LayerReport{}, fmt.Errorf("diff id: %w", err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return mutate.Addendum{}, LayerReport{}, fmt.Errorf("read layer: %w", err)
	}
	defer rc.Close()
	odesc := ocispec.Descriptor{MediaType: string(desc.MediaType), Size: desc.Size, Annotations: desc.Annotations}
	odesc.Digest, err = digestOf(desc.Digest)
	if err != nil {
		return mutate.Addendum{}, LayerReport{}, err
	}
	er, fin, err := layercrypt.Encrypt(rcpts, rc, odesc)
	if err != nil {
		return mutate.Addendum{}, LayerReport{}, err
	}
	f, err := os.CreateTemp(tmp, "layer-*.enc")
	if err != nil {
		return mutate.Addendum{}, LayerReport{}, fmt.Errorf("create encrypted blob: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), er)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return mutate.Addendum{}, LayerReport{}, fmt.Errorf("write encrypted blob: %w", err)
	}
	encAnn, err := fin()
	if err != nil {
		return mutate.Addendum{}, LayerReport{}, fmt.Errorf("wrap layer key: %w", err)
	}
	el := &encryptedLayer{
		path:      f.Name(),
		digest:    v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))},
		size:      n,
		diffID:    diffID,
		mediaType: types.MediaType(layercrypt.EncryptedMediaType(string(desc.MediaType))),
	}
	ann := merge(desc.Annotations, encAnn)
	return mutate.Addendum{Layer: el, Annotations: ann},
		LayerReport{Confidential: true, Digest: el.digest, DiffID: diffID}, nil
}

func integrityLayer(ctx context.Context, l v1.Layer, desc v1.Descriptor, o Options) (mutate.Addendum, LayerReport, error) {
	diffID, err := l.DiffID()
	if err != nil {
		return mutate.Addendum{}, LayerReport{}, fmt.Errorf("diff id: %w", err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return mutate.Addendum{}, LayerReport{}, fmt.Errorf("read layer: %w", err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(o.IntegrityDir, ".build-*.erofs")
	if err != nil {
		return mutate.Addendum{}, LayerReport{}, fmt.Errorf("create erofs image: %w", err)
	}
	f.Close()
	building := f.Name()
	// CreateTemp makes it 0600; the host serves it to guests as it is.
	if err := os.Chmod(building, 0o644); err != nil {
		return mutate.Addendum{}, LayerReport{}, fmt.Errorf("create erofs image: %w", err)
	}
	defer os.Remove(building)
	if err := erofs.Build(ctx, rc, building, erofs.Options{UUID: uuidFrom(diffID.Hex), TempDir: o.WorkDir}); err != nil {
		return mutate.Addendum{}, LayerReport{}, err
	}
	d, size, err := fileDigest(building)
	if err != nil {
		return mutate.Addendum{}, LayerReport{}, err
	}
	erofsPath := filepath.Join(o.IntegrityDir, d.Hex+".erofs")
	if err := os.Rename(building, erofsPath); err != nil {
		return mutate.Addendum{}, LayerReport{}, fmt.Errorf("store erofs image: %w", err)
	}
	verityPath := filepath.Join(o.IntegrityDir, d.Hex+".verity")
	var vuuid [16]byte
	copy(vuuid[:], uuidBytes(d.Hex))
	vr, err := verity.FormatFile(erofsPath, verityPath, verity.Params{Salt: o.Salt, UUID: vuuid})
	if err != nil {
		return mutate.Addendum{}, LayerReport{}, fmt.Errorf("dm-verity: %w", err)
	}
	rep := LayerReport{
		Digest:      desc.Digest,
		DiffID:      diffID,
		RootHash:    hex.EncodeToString(vr.RootHash),
		Salt:        hex.EncodeToString(vr.Salt),
		ErofsDigest: d,
		ErofsPath:   erofsPath,
		VerityPath:  verityPath,
	}
	ann := merge(desc.Annotations, map[string]string{
		AnnotationVerityRootHash: rep.RootHash,
		AnnotationVeritySalt:     rep.Salt,
		AnnotationErofsDigest:    d.String(),
		AnnotationErofsSize:      strconv.FormatInt(size, 10),
	})
	return mutate.Addendum{Layer: l, Annotations: ann}, rep, nil
}

func (o Options) progress(msg string) {
	if o.Progress != nil {
		fmt.Fprintln(o.Progress, msg)
	}
}

func merge(a, b map[string]string) map[string]string {
	m := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

func short(h v1.Hash) string {
	if len(h.Hex) < 12 {
		return h.String()
	}
	return h.Algorithm + ":" + h.Hex[:12]
}

// Integrity builds the integrity descriptor of the non-confidential layer
// l into o.IntegrityDir, as Split does. With the salt Split used (o.Salt,
// from the manifest's io.scc.verity.salt) it gives the same erofs image and
// root hash, so a host can rebuild, and cache, what a split image's
// manifest describes without the files Split wrote.
func Integrity(ctx context.Context, l v1.Layer, o Options) (LayerReport, error) {
	d, err := l.Digest()
	if err != nil {
		return LayerReport{}, fmt.Errorf("layer digest: %w", err)
	}
	if err := os.MkdirAll(o.IntegrityDir, 0o755); err != nil {
		return LayerReport{}, fmt.Errorf("create integrity dir: %w", err)
	}
	_, rep, err := integrityLayer(ctx, l, v1.Descriptor{Digest: d}, o)
	return rep, err
}
