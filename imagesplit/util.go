package imagesplit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
)

func digestOf(h v1.Hash) (digest.Digest, error) {
	d, err := digest.Parse(h.String())
	if err != nil {
		return "", fmt.Errorf("layer digest %s: %w", h, err)
	}
	return d, nil
}

func fileDigest(p string) (v1.Hash, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("digest %s: %w", p, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("digest %s: %w", p, err)
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, n, nil
}

// uuidBytes derives 16 bytes shaped as a version-4 UUID from a hex
// digest, so that the same layer always yields the same image.
func uuidBytes(hexDigest string) []byte {
	b, err := hex.DecodeString(hexDigest)
	if err != nil || len(b) < 16 {
		s := sha256.Sum256([]byte(hexDigest))
		b = s[:]
	}
	u := append([]byte(nil), b[:16]...)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

func uuidFrom(hexDigest string) string {
	u := uuidBytes(hexDigest)
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
