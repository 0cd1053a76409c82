package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
	"github.com/sccontainers/scc/attest/tdx"
	"github.com/sccontainers/scc/attest/vtpm"
)

// Every TEE backend plugs into the client.
var (
	_ Attester = (*snp.Attester)(nil)
	_ Attester = (*tdx.Attester)(nil)
	_ Attester = (*vtpm.Attester)(nil)
	_ Attester = (*sim.Attester)(nil)
)

func TestResourcePath(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "default/key/1", want: "default/key/1"},
		{in: "/default/key/1", want: "default/key/1"},
		{in: "kbs:///default/key/1", want: "default/key/1"},
		{in: "kbs://kbs.example:8080/default/key/1", want: "default/key/1"},
		{in: "default/key", wantErr: true},
		{in: "default//1", wantErr: true},
		{in: "a/b/c/d", wantErr: true},
		{in: "a/b/c d", want: "a/b/c%20d"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := resourcePath(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("resourcePath(%q) = %q, want error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("resourcePath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

type fakeAttester struct{ calls int }

func (*fakeAttester) TEE() string { return "sim" }
func (a *fakeAttester) Evidence(context.Context, [64]byte) ([]byte, error) {
	a.calls++
	return []byte(`{}`), nil
}

// A refusal is reported as a ServerError carrying the ErrorInformation,
// and the client stops at the first refused step.
func TestServerError(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/kbs/v0/auth" {
			t.Errorf("unexpected request to %s", r.URL.Path)
		}
		w.Header().Set("Kbs-Tee", "sim")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"type":"https://github.com/confidential-containers/kbs/errors/PolicyDeny","detail":"no"}`))
	}))
	defer ts.Close()
	a := &fakeAttester{}
	c := &Client{URL: ts.URL, AllowHTTP: true, KeyType: ECP256}
	_, err := c.GetResource(context.Background(), "a/b/c", a)
	var se *ServerError
	if !errors.As(err, &se) {
		t.Fatalf("GetResource() = %v, want *ServerError", err)
	}
	if se.Status != http.StatusForbidden || !strings.HasSuffix(se.Type, "PolicyDeny") || se.Detail != "no" || se.TEE != "sim" {
		t.Fatalf("ServerError = %+v", se)
	}
	if a.calls != 0 {
		t.Fatal("evidence was produced although auth failed")
	}
}

func encryptTo(t testing.TB, pub any, alg jose.KeyAlgorithm, plaintext []byte) []byte {
	t.Helper()
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: alg, Key: pub}, nil)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := enc.Encrypt(plaintext)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(obj.FullSerialize())
}

func TestDecryptResource(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := encryptTo(t, ec.Public(), jose.ECDH_ES_A256KW, []byte("secret"))
	tampered := bytes.Replace(good, []byte(`"ciphertext":"`), []byte(`"ciphertext":"AA`), 1)
	tests := []struct {
		name string
		body []byte
		key  any
		want string
	}{
		{name: "EC", body: good, key: ec, want: "secret"},
		{name: "RSA", body: encryptTo(t, &rsaKey.PublicKey, jose.RSA_OAEP_256, []byte("rsa secret")), key: rsaKey, want: "rsa secret"},
		{name: "other key", body: good, key: other},
		{name: "tampered ciphertext", body: tampered, key: ec},
		{name: "refused algorithm", body: encryptTo(t, &rsaKey.PublicKey, jose.RSA1_5, []byte("x")), key: rsaKey},
		{name: "not a JWE", body: []byte(`{"ciphertext":"AA"}`), key: ec},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decryptResource(tc.body, tc.key)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("decryptResource = %q, want an error", got)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("decryptResource = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// FuzzDecryptResource feeds hostile resource responses (a broker
// impostor, or anything on the path) to the JWE parser and decrypter.
func FuzzDecryptResource(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	good := encryptTo(f, key.Public(), jose.ECDH_ES_A256KW, []byte("layer key"))
	f.Add(good)
	f.Add([]byte(`{"protected":"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyJ9","encrypted_key":"","iv":"","ciphertext":"","tag":""}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		secret, err := decryptResource(body, key)
		if err == nil && !bytes.Equal(body, good) && string(secret) != "layer key" {
			// Only a JWE made for this key decrypts, and the only such
			// JWE in the corpus carries "layer key".
			t.Fatalf("decrypted a forged response to %q", secret)
		}
	})
}
