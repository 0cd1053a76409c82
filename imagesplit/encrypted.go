package imagesplit

import (
	"errors"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// errEncrypted is returned for the uncompressed stream of an encrypted
// layer: only a guest holding the key can produce it.
var errEncrypted = errors.New("layer is encrypted")

// encryptedLayer is an encrypted blob kept in a file until written out.
type encryptedLayer struct {
	path      string
	digest    v1.Hash
	size      int64
	diffID    v1.Hash // of the plain layer: the config's rootfs is unchanged
	mediaType types.MediaType
}

var _ v1.Layer = (*encryptedLayer)(nil)

func (l *encryptedLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *encryptedLayer) DiffID() (v1.Hash, error)             { return l.diffID, nil }
func (l *encryptedLayer) Size() (int64, error)                 { return l.size, nil }
func (l *encryptedLayer) MediaType() (types.MediaType, error)  { return l.mediaType, nil }
func (l *encryptedLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *encryptedLayer) Uncompressed() (io.ReadCloser, error) { return nil, errEncrypted }
