package layercrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/containers/ocicrypt"
	"github.com/containers/ocicrypt/config"
)

// KBSAnnotation is the layer annotation CoCo's image-rs reads the wrapped
// key from: base64 of a JSON AnnotationPacket
// {"kid","wrapped_data","iv","wrap_type"}, where wrapped_data is the
// layer's private ocicrypt options (the layer key) sealed with AES-256-GCM
// under the KEK the key broker serves at kid, iv the 12-byte GCM nonce,
// both base64, and wrap_type "A256GCM".
const KBSAnnotation = "org.opencontainers.image.enc.keys.provider.attestation-agent"

// WrapType is the only key wrapping CoCo's attestation agent needs.
const WrapType = "A256GCM"

const (
	providerName = "attestation-agent"
	// Parameter names carrying the KID and KEK through ocicrypt's
	// configs; they never leave this process.
	paramKID = "scc-kbs-kid"
	paramKEK = "scc-kbs-kek"
)

// KEKSize is the size of a key-encryption key: AES-256.
const KEKSize = 32

var kidPattern = regexp.MustCompile(`^kbs://[^/]*/[^/]+/[^/]+/[^/]+$`)

// ErrBadKID reports a key ID that is not a kbs:///repository/type/tag URI.
var ErrBadKID = errors.New("key id must look like kbs:///repository/type/tag")

// KBSKey is a KEK and the key broker resource ID it is served under.
type KBSKey struct {
	KID string // kbs:///default/key/NAME
	KEK []byte // KEKSize bytes; the resource's raw content at the broker
}

// NewKBSKey generates a random KEK for kid.
func NewKBSKey(kid string) (*KBSKey, error) {
	if !kidPattern.MatchString(kid) {
		return nil, fmt.Errorf("%q: %w", kid, ErrBadKID)
	}
	k := &KBSKey{KID: kid, KEK: make([]byte, KEKSize)}
	if _, err := rand.Read(k.KEK); err != nil {
		return nil, fmt.Errorf("generate kek: %w", err)
	}
	return k, nil
}

// ResourcePath is the key broker resource path of the key
// ("default/key/NAME" for kbs:///default/key/NAME).
func (k *KBSKey) ResourcePath() string {
	u := k.KID[len("kbs://"):]
	i := 0
	for i < len(u) && u[i] != '/' {
		i++
	}
	return u[i+1:]
}

func (k *KBSKey) check() error {
	if !kidPattern.MatchString(k.KID) {
		return fmt.Errorf("%q: %w", k.KID, ErrBadKID)
	}
	if len(k.KEK) != KEKSize {
		return fmt.Errorf("kek of %d bytes, want %d", len(k.KEK), KEKSize)
	}
	return nil
}

func (k *KBSKey) encryptConfig() (config.CryptoConfig, error) {
	if err := k.check(); err != nil {
		return config.CryptoConfig{}, err
	}
	return config.InitEncryption(map[string][][]byte{paramKID: {[]byte(k.KID)}, paramKEK: {k.KEK}}, nil), nil
}

func (k *KBSKey) decryptConfig() (config.CryptoConfig, error) {
	if err := k.check(); err != nil {
		return config.CryptoConfig{}, err
	}
	return config.InitDecryption(map[string][][]byte{paramKID: {[]byte(k.KID)}, paramKEK: {k.KEK}}), nil
}

// annotationPacket is CoCo's AnnotationPacket.
type annotationPacket struct {
	KID         string `json:"kid"`
	WrappedData string `json:"wrapped_data"`
	IV          string `json:"iv"`
	WrapType    string `json:"wrap_type"`
}

var registerOnce sync.Once

// registerKBS installs the wrapper under ocicrypt's "provider.<name>"
// scheme. It replaces, in this process only, an attestation-agent key
// provider an ocicrypt keyprovider config may have named: wrapping here
// needs no external provider.
func registerKBS() {
	registerOnce.Do(func() { ocicrypt.RegisterKeyWrapper("provider."+providerName, kbsWrapper{}) })
}

// kbsWrapper implements ocicrypt's keywrap.KeyWrapper.
type kbsWrapper struct{}

func (kbsWrapper) GetAnnotationID() string { return KBSAnnotation }

func (kbsWrapper) WrapKeys(ec *config.EncryptConfig, optsData []byte) ([]byte, error) {
	kids, keks := ec.Parameters[paramKID], ec.Parameters[paramKEK]
	if len(kids) == 0 {
		return nil, nil // not a recipient of this layer
	}
	if len(kids) != 1 || len(keks) != 1 {
		// One annotation holds one packet; CoCo reads no list here.
		return nil, errors.New("kbs key wrap: exactly one kbs key per layer")
	}
	aead, err := newGCM(keks[0])
	if err != nil {
		return nil, err
	}
	iv := make([]byte, aead.NonceSize())
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("kbs key wrap: nonce: %w", err)
	}
	return json.Marshal(annotationPacket{
		KID:         string(kids[0]),
		WrappedData: base64.StdEncoding.EncodeToString(aead.Seal(nil, iv, optsData, nil)),
		IV:          base64.StdEncoding.EncodeToString(iv),
		WrapType:    WrapType,
	})
}

func (kbsWrapper) UnwrapKey(dc *config.DecryptConfig, annotation []byte) ([]byte, error) {
	var p annotationPacket
	if err := json.Unmarshal(annotation, &p); err != nil {
		return nil, fmt.Errorf("kbs key unwrap: parse packet: %w", err)
	}
	if p.WrapType != WrapType {
		return nil, fmt.Errorf("kbs key unwrap: wrap type %q not supported", p.WrapType)
	}
	kids, keks := dc.Parameters[paramKID], dc.Parameters[paramKEK]
	for i, kid := range kids {
		if i >= len(keks) || subtle.ConstantTimeCompare(kid, []byte(p.KID)) != 1 {
			continue
		}
		aead, err := newGCM(keks[i])
		if err != nil {
			return nil, err
		}
		iv, err := base64.StdEncoding.DecodeString(p.IV)
		if err != nil || len(iv) != aead.NonceSize() {
			return nil, errors.New("kbs key unwrap: bad iv")
		}
		ct, err := base64.StdEncoding.DecodeString(p.WrappedData)
		if err != nil {
			return nil, fmt.Errorf("kbs key unwrap: wrapped data: %w", err)
		}
		opts, err := aead.Open(nil, iv, ct, nil)
		if err != nil {
			return nil, fmt.Errorf("kbs key unwrap %s: %w", p.KID, err)
		}
		return opts, nil
	}
	return nil, fmt.Errorf("kbs key unwrap: no key for %s", p.KID)
}

func (kbsWrapper) NoPossibleKeys(dcparameters map[string][][]byte) bool {
	return len(dcparameters[paramKEK]) == 0
}

func (kbsWrapper) GetPrivateKeys(dcparameters map[string][][]byte) [][]byte {
	return dcparameters[paramKEK]
}

func (kbsWrapper) GetKeyIdsFromPacket(string) ([]uint64, error) { return nil, nil }

func (kbsWrapper) GetRecipients(string) ([]string, error) { return nil, nil }

func newGCM(kek []byte) (cipher.AEAD, error) {
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("kek of %d bytes, want %d", len(kek), KEKSize)
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("kek cipher: %w", err)
	}
	return cipher.NewGCM(b)
}
