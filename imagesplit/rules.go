package imagesplit

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Rule chooses the confidential layers of an image.
type Rule interface {
	// Select returns, for each layer (bottom first), whether it is
	// confidential.
	Select(ctx context.Context, layers []v1.Layer) ([]bool, error)
}

// ByIndex marks the layers at these 0-based indexes (bottom layer 0).
type ByIndex []int

// ErrNoSuchLayer reports a layer index beyond the image's layers.
var ErrNoSuchLayer = errors.New("no such layer")

func (r ByIndex) Select(_ context.Context, layers []v1.Layer) ([]bool, error) {
	sel := make([]bool, len(layers))
	for _, i := range r {
		if i < 0 || i >= len(layers) {
			return nil, fmt.Errorf("layer %d of %d: %w", i, len(layers), ErrNoSuchLayer)
		}
		sel[i] = true
	}
	return sel, nil
}

// ByPathPrefix marks a layer if any entry of its tar lies at or below one
// of the prefixes. Prefixes match whole path components: "/app" matches
// "app" and "app/bin/x" but not "apple". Whiteout entries count: a layer
// deleting a file under /app changes /app.
type ByPathPrefix []string

func (r ByPathPrefix) Select(ctx context.Context, layers []v1.Layer) ([]bool, error) {
	prefixes := make([]string, 0, len(r))
	for _, p := range r {
		c := path.Clean("/" + p)
		if c == "/" {
			return nil, fmt.Errorf("path prefix %q would match every layer: use ByIndex", p)
		}
		prefixes = append(prefixes, c)
	}
	sel := make([]bool, len(layers))
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m, err := layerHasPrefix(l, prefixes)
		if err != nil {
			return nil, fmt.Errorf("scan layer %d: %w", i, err)
		}
		sel[i] = m
	}
	return sel, nil
}

func layerHasPrefix(l v1.Layer, prefixes []string) (bool, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return false, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read tar: %w", err)
		}
		name := path.Clean("/" + h.Name)
		for _, p := range prefixes {
			if name == p || strings.HasPrefix(name, p+"/") {
				return true, nil
			}
		}
	}
}

// ErrNotOnBase reports an image that does not start with the base image's
// layers.
var ErrNotOnBase = errors.New("image is not built on the base image")

// aboveBase marks every layer above the base image's.
type aboveBase struct{ base []v1.Hash }

// AboveBase marks the layers an image adds on top of base: those beyond
// the base's diff IDs. The image's lower layers must be the base's.
func AboveBase(base v1.Image) (Rule, error) {
	ids, err := diffIDs(base)
	if err != nil {
		return nil, fmt.Errorf("base image: %w", err)
	}
	return aboveBase{base: ids}, nil
}

func (r aboveBase) Select(_ context.Context, layers []v1.Layer) ([]bool, error) {
	if len(layers) < len(r.base) {
		return nil, fmt.Errorf("%d layers, base has %d: %w", len(layers), len(r.base), ErrNotOnBase)
	}
	sel := make([]bool, len(layers))
	for i, l := range layers {
		if i >= len(r.base) {
			sel[i] = true
			continue
		}
		id, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("layer %d diff id: %w", i, err)
		}
		if id != r.base[i] {
			return nil, fmt.Errorf("layer %d is %s, base has %s: %w", i, id, r.base[i], ErrNotOnBase)
		}
	}
	return sel, nil
}

func diffIDs(img v1.Image) ([]v1.Hash, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return cf.RootFS.DiffIDs, nil
}
