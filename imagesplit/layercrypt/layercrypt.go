// Package layercrypt encrypts and decrypts OCI image layers with ocicrypt,
// the library containerd's imgcrypt, skopeo and CoCo's image-rs agree on,
// so that the layers it writes decrypt with any of them.
//
// Two ways to protect the layer key are offered:
//   - JWE: the key is wrapped to an RSA or EC public key
//     (org.opencontainers.image.enc.keys.jwe), as `skopeo copy
//     --encryption-key jwe:pub.pem` does; the key broker holds the
//     private key.
//   - KBS: the key is wrapped with a 256-bit key-encryption key (KEK)
//     that the key broker releases to an attested guest under a
//     kbs:///repository/type/tag resource ID, in the form CoCo's
//     attestation agent unwraps (see kbs.go).
package layercrypt

import (
	"fmt"
	"io"
	"strings"

	"github.com/containers/ocicrypt"
	"github.com/containers/ocicrypt/config"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// EncryptedSuffix ends the media type of an encrypted layer.
const EncryptedSuffix = "+encrypted"

// Recipient says who can unwrap a layer key.
type Recipient interface {
	encryptConfig() (config.CryptoConfig, error)
}

// JWERecipient wraps layer keys to a PEM public key.
type JWERecipient struct{ PublicKeyPEM []byte }

func (r JWERecipient) encryptConfig() (config.CryptoConfig, error) {
	cc, err := config.EncryptWithJwe([][]byte{r.PublicKeyPEM})
	if err != nil {
		return config.CryptoConfig{}, fmt.Errorf("jwe recipient: %w", err)
	}
	return cc, nil
}

// EncryptedMediaType returns the media type of mt once encrypted; Docker
// layer types become their OCI equivalents, as imgcrypt does.
func EncryptedMediaType(mt string) string {
	switch mt {
	case "application/vnd.docker.image.rootfs.diff.tar.gzip":
		mt = ocispec.MediaTypeImageLayerGzip
	case "application/vnd.docker.image.rootfs.diff.tar":
		mt = ocispec.MediaTypeImageLayer
	}
	if strings.HasSuffix(mt, EncryptedSuffix) {
		return mt
	}
	return mt + EncryptedSuffix
}

// Encrypt returns a reader of the encrypted blob of the layer desc whose
// plain blob is read from r, and a function that, once the reader is
// drained, returns the annotations to add to the encrypted descriptor.
func Encrypt(rcpts []Recipient, r io.Reader, desc ocispec.Descriptor) (io.Reader, func() (map[string]string, error), error) {
	if len(rcpts) == 0 {
		return nil, nil, fmt.Errorf("encrypt layer: no recipient")
	}
	registerKBS()
	var ccs []config.CryptoConfig
	for _, rc := range rcpts {
		cc, err := rc.encryptConfig()
		if err != nil {
			return nil, nil, err
		}
		ccs = append(ccs, cc)
	}
	cc := config.CombineCryptoConfigs(ccs)
	er, fin, err := ocicrypt.EncryptLayer(cc.EncryptConfig, r, desc)
	if err != nil {
		return nil, nil, fmt.Errorf("encrypt layer: %w", err)
	}
	return er, fin, nil
}

// DecryptKey is what unwraps a layer key: a JWE private key or a KBS KEK.
type DecryptKey interface {
	decryptConfig() (config.CryptoConfig, error)
}

// JWEPrivateKey unwraps keys wrapped to its public half.
type JWEPrivateKey struct{ PEM []byte }

func (k JWEPrivateKey) decryptConfig() (config.CryptoConfig, error) {
	cc, err := config.DecryptWithPrivKeys([][]byte{k.PEM}, [][]byte{nil})
	if err != nil {
		return config.CryptoConfig{}, fmt.Errorf("jwe private key: %w", err)
	}
	return cc, nil
}

// Decrypt returns a reader of the plain blob of the encrypted layer desc
// read from r. ocicrypt checks the ciphertext's HMAC as the reader
// reaches its end; the caller checks the plain blob against the digest it
// expects (the manifest's diff ID once decompressed).
func Decrypt(key DecryptKey, r io.Reader, desc ocispec.Descriptor) (io.Reader, error) {
	registerKBS()
	cc, err := key.decryptConfig()
	if err != nil {
		return nil, err
	}
	// The digest ocicrypt returns is not filled in by its AES-CTR cipher:
	// it is not used.
	pr, _, err := ocicrypt.DecryptLayer(cc.DecryptConfig, r, desc, false)
	if err != nil {
		return nil, fmt.Errorf("decrypt layer: %w", err)
	}
	return pr, nil
}
