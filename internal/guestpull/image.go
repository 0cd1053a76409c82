package guestpull

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/sccontainers/scc/imagesplit"
	"github.com/sccontainers/scc/imagesplit/layercrypt"
	"github.com/sccontainers/scc/internal/ocilayout"
)

// SecretImage is busybox with a confidential layer on top holding
// /secret.txt (a line the container can print) and /marker (a string that
// must never be seen on the host).
type SecretImage struct {
	Ref    string // as pushed, e.g. 127.0.0.1:5000/app:v1
	Digest v1.Hash
	Secret string
	Marker string
	Layers []v1.Descriptor
	// PlainLayer is the confidential layer's blob before encryption.
	PlainLayer []byte
}

// ImageOptions say what to push.
type ImageOptions struct {
	Busybox  string // static busybox binary
	Registry string // host:port, plain HTTP
	Repo     string // repository:tag
	// Rule selects the layers to encrypt (0 is busybox, 1 the secret
	// one); nil pushes the image in the clear.
	Rule       imagesplit.Rule
	Recipients []layercrypt.Recipient
	// WorkDir holds imagesplit's temporary files and the integrity
	// descriptors of the plain layers.
	WorkDir string
	// Files are more files of the secret layer, by path (they replace
	// busybox's, /etc/passwd say).
	Files map[string]string
	// Config, if set, replaces the image config's entrypoint, command,
	// environment, working directory and user.
	Config *v1.Config
}

// PushSecretImage builds a secret image, encrypts the layers the rule
// selects and pushes it.
func PushSecretImage(ctx context.Context, o ImageOptions) (SecretImage, error) {
	si := SecretImage{Secret: "the secret line " + randomHex(8), Marker: "scc-confidential-marker-" + randomHex(16)}
	base, err := ocilayout.BusyboxImage(o.Busybox)
	if err != nil {
		return si, err
	}
	files := map[string]string{"secret.txt": si.Secret + "\n", "marker": si.Marker + "\n"}
	for p, c := range o.Files {
		files[p] = c
	}
	layer, err := ocilayout.FilesLayer(files)
	if err != nil {
		return si, err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return si, err
	}
	si.PlainLayer, err = io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return si, err
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return si, err
	}
	if o.Config != nil {
		cf, err := img.ConfigFile()
		if err != nil {
			return si, err
		}
		cf = cf.DeepCopy()
		cf.Config.Entrypoint, cf.Config.Cmd = o.Config.Entrypoint, o.Config.Cmd
		cf.Config.Env = append(cf.Config.Env, o.Config.Env...)
		cf.Config.WorkingDir, cf.Config.User = o.Config.WorkingDir, o.Config.User
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return si, err
		}
	}
	if o.Rule != nil {
		res, err := imagesplit.Split(ctx, img, imagesplit.Options{Rule: o.Rule, Recipients: o.Recipients, IntegrityDir: o.WorkDir, WorkDir: o.WorkDir})
		if err != nil {
			return si, err
		}
		defer res.Close()
		img = res.Image
	}
	ref, err := name.ParseReference(o.Registry+"/"+o.Repo, name.Insecure)
	if err != nil {
		return si, err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return si, fmt.Errorf("push %s: %w", ref, err)
	}
	si.Ref = ref.String()
	if si.Digest, err = img.Digest(); err != nil {
		return si, err
	}
	m, err := img.Manifest()
	if err != nil {
		return si, err
	}
	si.Layers = m.Layers
	return si, nil
}

// BlobBytes is the size of the image's layer blobs.
func (si SecretImage) BlobBytes() int64 {
	var n int64
	for _, l := range si.Layers {
		n += l.Size
	}
	return n
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
