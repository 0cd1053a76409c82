package attest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"testing"
)

func TestReportData(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	base, err := ReportData("nonce", k1.Public())
	if err != nil {
		t.Fatal(err)
	}

	// Recompute from the documented encoding, independently of writeField.
	spki, _ := x509.MarshalPKIXPublicKey(k1.Public())
	msg := []byte("scc-kbs-report-data-v1")
	msg = append(msg, 0, 0, 0, 5)
	msg = append(msg, "nonce"...)
	msg = append(msg, byte(len(spki)>>24), byte(len(spki)>>16), byte(len(spki)>>8), byte(len(spki)))
	msg = append(msg, spki...)
	if want := sha512.Sum512(msg); base != want {
		t.Fatalf("ReportData() = %x, want %x", base, want)
	}

	tests := []struct {
		name  string
		nonce string
		key   any
	}{
		{name: "other nonce", nonce: "nonce2", key: k1.Public()},
		{name: "other key", nonce: "nonce", key: k2.Public()},
		{name: "empty nonce", nonce: "", key: k1.Public()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReportData(tc.nonce, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if got == base {
				t.Fatal("different input gave the same report data")
			}
		})
	}

	again, _ := ReportData("nonce", &k1.PublicKey)
	if again != base {
		t.Fatal("same nonce and key gave different report data")
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := ReportData("nonce", edPub); err != nil {
		t.Fatalf("ReportData(ed25519) = %v", err)
	}
	for _, bad := range []any{nil, "not a key"} {
		if _, err := ReportData("nonce", bad); !errors.Is(err, ErrUnsupportedKey) {
			t.Fatalf("ReportData(%v) = %v, want %v", bad, err, ErrUnsupportedKey)
		}
	}
}
