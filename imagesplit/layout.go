package imagesplit

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Source yields the image to split. A registry source (pkg/v1/remote)
// fits here too: it returns the same lazily fetched v1.Image.
type Source interface {
	Image(ctx context.Context) (v1.Image, error)
}

// Sink stores the split image.
type Sink interface {
	Write(ctx context.Context, img v1.Image) error
}

// refNameAnnotation names an image in an OCI layout's index.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// ErrAmbiguous reports an OCI layout holding several images and no name
// to choose one.
var ErrAmbiguous = errors.New("layout holds several images: give a ref name")

// LayoutSource reads an image from an OCI image layout directory.
type LayoutSource struct {
	Path string
	// Ref selects the manifest whose org.opencontainers.image.ref.name is
	// Ref; "" takes the only image of the layout.
	Ref string
}

func (s LayoutSource) Image(_ context.Context) (v1.Image, error) {
	p, err := layout.FromPath(s.Path)
	if err != nil {
		return nil, fmt.Errorf("open layout %s: %w", s.Path, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("read layout index: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read layout index: %w", err)
	}
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		if !d.MediaType.IsImage() {
			continue
		}
		if s.Ref == "" || d.Annotations[refNameAnnotation] == s.Ref {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0:
		return nil, fmt.Errorf("layout %s: no image %q", s.Path, s.Ref)
	case len(found) > 1:
		return nil, fmt.Errorf("layout %s: %w", s.Path, ErrAmbiguous)
	}
	img, err := idx.Image(found[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("read image %s: %w", found[0].Digest, err)
	}
	return img, nil
}

// LayoutSink adds the image to an OCI image layout directory, creating
// the layout if needed.
type LayoutSink struct {
	Path string
	Ref  string // written as org.opencontainers.image.ref.name if set
}

func (s LayoutSink) Write(_ context.Context, img v1.Image) error {
	p, err := layout.FromPath(s.Path)
	if err != nil {
		p, err = layout.Write(s.Path, empty.Index)
		if err != nil {
			return fmt.Errorf("create layout %s: %w", s.Path, err)
		}
	}
	var opts []layout.Option
	if s.Ref != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{refNameAnnotation: s.Ref}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		return fmt.Errorf("write image to %s: %w", s.Path, err)
	}
	return nil
}
