package pull

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sccontainers/scc/imagesplit/layercrypt"
)

// layerUnpack unpacks one layer of a manifest.
type layerUnpack struct {
	index  int
	desc   v1.Descriptor
	diffID v1.Hash // of the plain, uncompressed layer (the config's)
	keys   KeyGetter
}

// unpack streams the layer's blob through digest checks, decryption and
// decompression into dir. Every check that can only end with the stream
// (the blob digest, ocicrypt's authentication of the ciphertext, the diff
// ID) is made before unpack returns: a layer that fails one is an error,
// whatever was already written to dir (the caller removes it).
func (u layerUnpack) unpack(ctx context.Context, l v1.Layer, dir string) error {
	if u.desc.Digest.Algorithm != "sha256" || u.diffID.Algorithm != "sha256" {
		return fmt.Errorf("only sha256 digests are supported: %w", errdefs.ErrNotImplemented)
	}
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("fetch blob: %w", err)
	}
	defer rc.Close()
	blob := &checkedReader{r: rc, h: sha256.New(), want: u.desc.Digest.Hex, size: u.desc.Size, what: "blob"}
	if err := u.apply(ctx, blob, dir); err != nil {
		// Whatever failed (decryption, decompression, the tar stream), a
		// blob that is not the manifest's is the cause to report: read it
		// to its end to know.
		_, _ = io.Copy(io.Discard, blob)
		if verr := blob.verify(); errors.Is(verr, ErrDigestMismatch) {
			return verr
		}
		return err
	}
	if _, err := io.Copy(io.Discard, blob); err != nil {
		return fmt.Errorf("read blob: %w", err)
	}
	return blob.verify()
}

// apply decrypts and decompresses the blob and unpacks it into dir,
// checking the plain layer against its diff ID.
func (u layerUnpack) apply(ctx context.Context, blob io.Reader, dir string) error {
	plain := blob
	if isEncrypted(string(u.desc.MediaType)) {
		var err error
		if plain, err = u.decrypt(ctx, blob); err != nil {
			return err
		}
	}
	ds, err := compression.DecompressStream(plain)
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	defer ds.Close()
	diff := &checkedReader{r: ds, h: sha256.New(), want: u.diffID.Hex, size: -1, what: "uncompressed layer (diff id)"}
	if _, err := archive.Apply(ctx, dir, diff, archive.WithConvertWhiteout(archive.OverlayConvertWhiteout)); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	// The tar stream may end before its padding, the decompressor before
	// the end of its input: read both to their ends, so that every check
	// (ocicrypt authenticates the ciphertext at its end) runs.
	if _, err := io.Copy(io.Discard, diff); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	if _, err := io.Copy(io.Discard, plain); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	return diff.verify()
}

// decrypt returns the plain blob of an encrypted layer, trying the keys
// the key getter finds for it.
func (u layerUnpack) decrypt(ctx context.Context, blob io.Reader) (io.Reader, error) {
	if u.keys == nil {
		return nil, fmt.Errorf("layer is encrypted and the guest has no key broker: %w", errdefs.ErrFailedPrecondition)
	}
	odesc := ocispec.Descriptor{
		MediaType:   string(u.desc.MediaType),
		Digest:      digest.Digest(u.desc.Digest.String()),
		Size:        u.desc.Size,
		Annotations: u.desc.Annotations,
	}
	keys, err := u.keys.Keys(ctx, odesc)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, k := range keys {
		// ocicrypt unwraps the layer key before it reads the blob: a key
		// that does not fit fails here and the next one is tried.
		r, err := layercrypt.Decrypt(k, blob, odesc)
		if err == nil {
			return r, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("no key from the key broker opens the layer: %w: %w", errors.Join(errs...), errdefs.ErrPermissionDenied)
}

// checkedReader hashes what it reads and, once its source ends or fails,
// says whether the content matched: a source that fails on a mismatch of
// its own (go-containerregistry's) then reports ErrDigestMismatch too.
type checkedReader struct {
	r    io.Reader
	h    hash.Hash
	want string // hex sha256
	size int64  // expected size, or -1
	what string
	n    int64
	done bool
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if err == nil {
		return n, nil
	}
	c.done = true
	if err == io.EOF {
		return n, err
	}
	// A source that saw all the bytes it should have and still fails
	// found them wrong.
	if c.size >= 0 && c.n == c.size && c.mismatch() {
		return n, c.verify()
	}
	return n, err
}

func (c *checkedReader) mismatch() bool {
	return hex.EncodeToString(c.h.Sum(nil)) != c.want
}

// verify reports whether what was read has the expected digest; it must
// be called after the source ended.
func (c *checkedReader) verify() error {
	if !c.done {
		return fmt.Errorf("%s: not read to its end", c.what)
	}
	if c.mismatch() {
		return fmt.Errorf("%w: %s is sha256:%s (%d bytes), the manifest says sha256:%s", ErrDigestMismatch, c.what, hex.EncodeToString(c.h.Sum(nil)), c.n, c.want)
	}
	return nil
}
