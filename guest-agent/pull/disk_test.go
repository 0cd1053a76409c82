package pull

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sccontainers/scc/imagesplit"
)

func TestLayerIntegrity(t *testing.T) {
	good := map[string]string{
		imagesplit.AnnotationVerityRootHash: strings.Repeat("ab", 32),
		imagesplit.AnnotationVeritySalt:     strings.Repeat("cd", 32),
		imagesplit.AnnotationErofsDigest:    "sha256:" + strings.Repeat("ef", 32),
		imagesplit.AnnotationErofsSize:      "8192",
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for _, tc := range []struct {
		name string
		ann  map[string]string
		ok   bool
		err  error
	}{
		{"descriptor", good, true, nil},
		{"none (an encrypted layer)", nil, false, nil},
		{"short root hash", with(imagesplit.AnnotationVerityRootHash, "abcd"), false, errdefs.ErrInvalidArgument},
		{"unaligned size", with(imagesplit.AnnotationErofsSize, "4097"), false, errdefs.ErrInvalidArgument},
		{"no size", with(imagesplit.AnnotationErofsSize, ""), false, errdefs.ErrInvalidArgument},
		{"bad salt", with(imagesplit.AnnotationVeritySalt, "xyz"), false, errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, ok, err := layerIntegrity(v1.Descriptor{Annotations: tc.ann})
			if ok != tc.ok || !errors.Is(err, tc.err) || (err != nil) != (tc.err != nil) {
				t.Fatalf("layerIntegrity = %v, %v; want %v, %v", ok, err, tc.ok, tc.err)
			}
			if ok && (in.erofsSize != 8192 || len(in.rootHash) != 32 || len(in.salt) != 32) {
				t.Errorf("integrity %+v", in)
			}
		})
	}
}
