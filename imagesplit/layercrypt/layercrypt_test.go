package layercrypt

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func gzLayer(t *testing.T) ([]byte, ocispec.Descriptor) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(bytes.Repeat([]byte("layer content "), 500))
	zw.Close()
	b := buf.Bytes()
	return b, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

func rsaKeys(t *testing.T) (pub, priv []byte) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pb}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

func encrypt(t *testing.T, rcpts []Recipient, plain []byte, desc ocispec.Descriptor) ([]byte, ocispec.Descriptor) {
	t.Helper()
	er, fin, err := Encrypt(rcpts, bytes.NewReader(plain), desc)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := io.ReadAll(er)
	if err != nil {
		t.Fatal(err)
	}
	ann, err := fin()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(enc, plain[:64]) {
		t.Fatal("encrypted blob contains the plain bytes")
	}
	return enc, ocispec.Descriptor{MediaType: EncryptedMediaType(desc.MediaType), Digest: digest.FromBytes(enc),
		Size: int64(len(enc)), Annotations: ann}
}

func TestRoundTrip(t *testing.T) {
	pub, priv := rsaKeys(t)
	_, otherPriv := rsaKeys(t)
	kbsKey, err := NewKBSKey("kbs:///default/key/app")
	if err != nil {
		t.Fatal(err)
	}
	otherKEK, _ := NewKBSKey("kbs:///default/key/app")
	otherKID := &KBSKey{KID: "kbs:///default/key/other", KEK: kbsKey.KEK}

	for _, tc := range []struct {
		name    string
		rcpts   []Recipient
		key     DecryptKey
		wantErr bool
	}{
		{"jwe", []Recipient{JWERecipient{pub}}, JWEPrivateKey{priv}, false},
		{"jwe wrong key", []Recipient{JWERecipient{pub}}, JWEPrivateKey{otherPriv}, true},
		{"kbs", []Recipient{kbsKey}, kbsKey, false},
		{"kbs wrong kek", []Recipient{kbsKey}, otherKEK, true},
		{"kbs wrong kid", []Recipient{kbsKey}, otherKID, true},
		{"both, jwe opens", []Recipient{JWERecipient{pub}, kbsKey}, JWEPrivateKey{priv}, false},
		{"both, kbs opens", []Recipient{JWERecipient{pub}, kbsKey}, kbsKey, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain, desc := gzLayer(t)
			enc, edesc := encrypt(t, tc.rcpts, plain, desc)
			if edesc.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip+encrypted" {
				t.Errorf("media type %s", edesc.MediaType)
			}
			pr, err := Decrypt(tc.key, bytes.NewReader(enc), edesc)
			if err == nil {
				var got []byte
				got, err = io.ReadAll(pr)
				if err == nil && digest.FromBytes(got) != desc.Digest {
					t.Fatal("decrypted blob differs from the original")
				}
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("decrypt error %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

// TestKBSAnnotationFormat checks the packet is what CoCo's attestation
// agent parses, and unwraps it by hand as the agent would with the KEK.
func TestKBSAnnotationFormat(t *testing.T) {
	k, err := NewKBSKey("kbs:///default/key/app")
	if err != nil {
		t.Fatal(err)
	}
	plain, desc := gzLayer(t)
	_, edesc := encrypt(t, []Recipient{k}, plain, desc)
	raw, err := base64.StdEncoding.DecodeString(edesc.Annotations[KBSAnnotation])
	if err != nil {
		t.Fatalf("annotation is not base64: %v", err)
	}
	var fields map[string]string
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatalf("packet is not a JSON object of strings: %v", err)
	}
	for _, f := range []string{"kid", "wrapped_data", "iv", "wrap_type"} {
		if fields[f] == "" {
			t.Errorf("packet lacks %s: %s", f, raw)
		}
	}
	if len(fields) != 4 {
		t.Errorf("packet has extra fields: %s", raw)
	}
	if fields["kid"] != "kbs:///default/key/app" || fields["wrap_type"] != "A256GCM" {
		t.Errorf("packet %s", raw)
	}
	aead, _ := newGCM(k.KEK)
	iv, _ := base64.StdEncoding.DecodeString(fields["iv"])
	ct, _ := base64.StdEncoding.DecodeString(fields["wrapped_data"])
	opts, err := aead.Open(nil, iv, ct, nil)
	if err != nil {
		t.Fatalf("open wrapped data with the KEK: %v", err)
	}
	var priv struct {
		SymmetricKey []byte `json:"symkey"`
		Digest       string `json:"digest"`
	}
	if err := json.Unmarshal(opts, &priv); err != nil || len(priv.SymmetricKey) != 32 || priv.Digest != desc.Digest.String() {
		t.Errorf("unwrapped options %s (%v)", opts, err)
	}
	if edesc.Annotations["org.opencontainers.image.enc.keys.jwe"] != "" {
		t.Error("jwe annotation without a jwe recipient")
	}
}

func TestNewKBSKey(t *testing.T) {
	for _, tc := range []struct {
		kid, path string
		err       error
	}{
		{"kbs:///default/key/app", "default/key/app", nil},
		{"kbs://kbs.example:8080/repo/type/tag", "repo/type/tag", nil},
		{"kbs:///default/key", "", ErrBadKID},
		{"kbs:///a/b/c/d", "", ErrBadKID},
		{"https:///default/key/app", "", ErrBadKID},
		{"default/key/app", "", ErrBadKID},
	} {
		t.Run(tc.kid, func(t *testing.T) {
			k, err := NewKBSKey(tc.kid)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if len(k.KEK) != KEKSize || bytes.Equal(k.KEK, make([]byte, KEKSize)) {
				t.Error("kek not generated")
			}
			if got := k.ResourcePath(); got != tc.path {
				t.Errorf("resource path %s, want %s", got, tc.path)
			}
		})
	}
}

func TestEncryptedMediaType(t *testing.T) {
	for in, want := range map[string]string{
		ocispec.MediaTypeImageLayerGzip:                         "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
		ocispec.MediaTypeImageLayer:                             "application/vnd.oci.image.layer.v1.tar+encrypted",
		"application/vnd.oci.image.layer.v1.tar+zstd":           "application/vnd.oci.image.layer.v1.tar+zstd+encrypted",
		"application/vnd.docker.image.rootfs.diff.tar.gzip":     "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
		"application/vnd.oci.image.layer.v1.tar+gzip+encrypted": "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
	} {
		if got := EncryptedMediaType(in); got != want {
			t.Errorf("EncryptedMediaType(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestDecryptDetectsTampering(t *testing.T) {
	k, err := NewKBSKey("kbs:///default/key/app")
	if err != nil {
		t.Fatal(err)
	}
	plain, desc := gzLayer(t)
	enc, edesc := encrypt(t, []Recipient{k}, plain, desc)
	enc[len(enc)/2] ^= 1
	pr, err := Decrypt(k, bytes.NewReader(enc), edesc)
	if err == nil {
		_, err = io.ReadAll(pr)
	}
	if err == nil {
		t.Error("a changed ciphertext decrypted without error")
	}
}
