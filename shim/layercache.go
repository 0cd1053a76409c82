package shim

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	agent "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/imagesplit"
	"github.com/sccontainers/scc/vmm"
)

// layerDiskSerialPrefix starts the virtio serial of a layer disk; the rest
// is the start of its erofs image's digest.
const layerDiskSerialPrefix = "scc"

// attachLayerDisks gives the guest the non-confidential layers of a split
// image from the host's cache: for each layer whose manifest entry has an
// integrity descriptor (imagesplit), the erofs image and its dm-verity tree,
// built once per image digest into confidential.layer_cache, attached
// read-only. The host trusts nothing here either: the guest checks each
// disk against the root hash of the manifest it pulled itself. It returns
// erofs image digest -> disk serial, for the guest.
func (sb *sandbox) attachLayerDisks(ctx context.Context, img *agent.GuestImage) (map[string]string, error) {
	c := sb.confidential
	hp, ok := sb.vm.(vmm.DiskHotplugger)
	if !ok {
		return nil, fmt.Errorf("the VMM cannot attach layer disks: %w", errdefs.ErrNotImplemented)
	}
	rimg, err := c.remoteImage(ctx, img)
	if err != nil {
		return nil, err
	}
	m, err := rimg.Manifest()
	if err != nil {
		return nil, fmt.Errorf("layer cache: read manifest: %w", err)
	}
	disks := map[string]string{}
	for i, desc := range m.Layers {
		a := desc.Annotations
		digest := a[imagesplit.AnnotationErofsDigest]
		if a[imagesplit.AnnotationVerityRootHash] == "" || digest == "" {
			continue
		}
		h, err := v1.NewHash(digest)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %s: %w", i, imagesplit.AnnotationErofsDigest, err)
		}
		serial := layerDiskSerialPrefix + h.Hex[:16]
		sb.diskMu.Lock()
		attached := sb.disks[digest]
		sb.diskMu.Unlock()
		if !attached {
			path, err := c.cachedLayer(ctx, rimg, desc)
			if err != nil {
				return nil, fmt.Errorf("layer %d: %w", i, err)
			}
			if err := hp.AddDisk(ctx, path, serial); err != nil {
				return nil, fmt.Errorf("layer %d: %w", i, err)
			}
			sb.diskMu.Lock()
			if sb.disks == nil {
				sb.disks = map[string]bool{}
			}
			sb.disks[digest] = true
			sb.diskMu.Unlock()
		}
		disks[digest] = serial
	}
	return disks, nil
}

// remoteImage is the image as the host reads it from the configured
// registry: only its manifest, and the blobs of layers the cache lacks.
func (c ConfidentialConfig) remoteImage(ctx context.Context, img *agent.GuestImage) (v1.Image, error) {
	var opts []name.Option
	if c.RegistryPlainHTTP {
		opts = append(opts, name.Insecure)
	}
	s := img.GetReference()
	if d := img.GetManifestDigest(); d != "" {
		ref, err := name.ParseReference(s, opts...)
		if err != nil {
			return nil, fmt.Errorf("layer cache: %w", err)
		}
		s = ref.Context().Name() + "@" + d
	}
	ref, err := name.ParseReference(s, opts...)
	if err != nil {
		return nil, fmt.Errorf("layer cache: image reference %q: %w", s, err)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, c.Registry)
	}}
	rimg, err := remote.Image(ref, remote.WithContext(ctx), remote.WithTransport(tr),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))
	if err != nil {
		return nil, fmt.Errorf("layer cache: fetch manifest of %s: %w", ref, err)
	}
	return rimg, nil
}

// cachedLayer returns the cache file of a layer's disk: its erofs image
// then its dm-verity tree (superblock block first), building it on a miss
// and checking that it is what the manifest describes.
func (c ConfidentialConfig) cachedLayer(ctx context.Context, rimg v1.Image, desc v1.Descriptor) (string, error) {
	a := desc.Annotations
	h, err := v1.NewHash(a[imagesplit.AnnotationErofsDigest])
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.LayerCache, h.Hex+".img")
	if _, err := os.Stat(path); err == nil {
		// The modification time orders the entries for eviction.
		now := time.Now()
		_ = os.Chtimes(path, now, now)
		return path, nil
	}
	if err := os.MkdirAll(c.LayerCache, 0o700); err != nil {
		return "", fmt.Errorf("layer cache: %w", err)
	}
	salt, err := hex.DecodeString(a[imagesplit.AnnotationVeritySalt])
	if err != nil {
		return "", fmt.Errorf("layer cache: salt: %w", err)
	}
	l, err := rimg.LayerByDigest(desc.Digest)
	if err != nil {
		return "", fmt.Errorf("layer cache: %w", err)
	}
	work, err := os.MkdirTemp(c.LayerCache, ".build-")
	if err != nil {
		return "", fmt.Errorf("layer cache: %w", err)
	}
	defer os.RemoveAll(work)
	log.G(ctx).WithField("layer", desc.Digest.String()).Info("layer cache: building erofs image and dm-verity tree")
	rep, err := imagesplit.Integrity(ctx, l, imagesplit.Options{IntegrityDir: work, WorkDir: work, Salt: salt})
	if err != nil {
		return "", fmt.Errorf("layer cache: build %s: %w", desc.Digest, err)
	}
	if rep.ErofsDigest != h || !strings.EqualFold(rep.RootHash, a[imagesplit.AnnotationVerityRootHash]) {
		return "", fmt.Errorf("layer cache: %s rebuilt as erofs %s root %s, the manifest says erofs %s root %s: %w",
			desc.Digest, rep.ErofsDigest, rep.RootHash, h, a[imagesplit.AnnotationVerityRootHash], errdefs.ErrDataLoss)
	}
	tmp := filepath.Join(work, "disk.img")
	if err := concat(tmp, rep.ErofsPath, rep.VerityPath); err != nil {
		return "", fmt.Errorf("layer cache: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("layer cache: %w", err)
	}
	if c.LayerCacheMaxMiB > 0 {
		if err := evictLayers(c.LayerCache, c.LayerCacheMaxMiB<<20, path); err != nil {
			log.G(ctx).WithError(err).Warn("layer cache: evict")
		}
	}
	return path, nil
}

// evictLayers removes the least recently used cache entries, other than
// keep, until the cache holds at most max bytes. A VM that has an entry
// attached keeps reading it: QEMU holds the file open.
func evictLayers(dir string, max int64, keep string) error {
	paths, err := filepath.Glob(filepath.Join(dir, "*.img"))
	if err != nil {
		return err
	}
	type entry struct {
		path string
		size int64
		used time.Time
	}
	var entries []entry
	var total int64
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		total += fi.Size()
		if p != keep {
			entries = append(entries, entry{p, fi.Size(), fi.ModTime()})
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].used.Before(entries[j].used) })
	for _, e := range entries {
		if total <= max {
			break
		}
		if err := os.Remove(e.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		total -= e.size
	}
	return nil
}

// concat writes the files srcs one after the other to dst.
func concat(dst string, srcs ...string) (retErr error) {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err := out.Close(); retErr == nil {
			retErr = err
		}
	}()
	for _, s := range srcs {
		in, err := os.Open(s)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		in.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
