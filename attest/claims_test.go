package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func testImage(c byte) Image {
	return Image{
		Manifest:  "sha256:" + strings.Repeat(string(c), 64),
		Config:    "sha256:" + strings.Repeat("c", 64),
		Reference: "registry.example/app:v1",
		Pinned:    true,
	}
}

func TestReportDataWithClaims(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	plain, err := ReportData("nonce", k.Public())
	if err != nil {
		t.Fatal(err)
	}
	// Without images the binding is ReportData's, which guests and
	// brokers that know no claims compute.
	for _, c := range []*RuntimeClaims{nil, {}} {
		if got, err := ReportDataWithClaims("nonce", k.Public(), c); err != nil || got != plain {
			t.Errorf("claims %+v: %x, %v; want ReportData's", c, got, err)
		}
	}

	claims := &RuntimeClaims{Images: []Image{testImage('a')}}
	got, err := ReportDataWithClaims("nonce", k.Public(), claims)
	if err != nil {
		t.Fatal(err)
	}
	// The documented encoding, computed independently.
	spki, _ := x509.MarshalPKIXPublicKey(k.Public())
	c, _ := claims.Marshal()
	msg := []byte("scc-kbs-report-data-v2")
	for _, f := range [][]byte{[]byte("nonce"), spki, c} {
		msg = binary.BigEndian.AppendUint32(msg, uint32(len(f)))
		msg = append(msg, f...)
	}
	if want := sha512.Sum512(msg); got != want {
		t.Fatalf("ReportDataWithClaims = %x, want %x", got, want)
	}
	if got == plain {
		t.Fatal("the claims change nothing")
	}
	other, _ := ReportDataWithClaims("nonce", k.Public(), &RuntimeClaims{Images: []Image{testImage('b')}})
	if other == got {
		t.Fatal("another image gave the same report data")
	}

	// What the broker decodes gives the guest's value back.
	parsed, err := ParseRuntimeClaims(c)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := ReportDataWithClaims("nonce", k.Public(), &parsed); again != got {
		t.Fatal("decoded claims give another binding")
	}
}

func TestClaimsValidate(t *testing.T) {
	bad := testImage('a')
	bad.Manifest = "sha256:ABC"
	if _, err := ReportDataWithClaims("n", nil, &RuntimeClaims{Images: []Image{bad}}); !errors.Is(err, ErrInvalidClaims) {
		t.Errorf("bad digest: %v", err)
	}
	for _, raw := range []string{
		`{"images":[{"manifest":"sha256:` + strings.Repeat("a", 64) + `","config":"sha256:` + strings.Repeat("c", 64) + `","pinned":true,"extra":1}]}`,
		`{"images":[{"manifest":"sha512:aa","config":"sha256:` + strings.Repeat("c", 64) + `","pinned":false}]}`,
		`{"images":[]} {}`,
		`[]`,
	} {
		if _, err := ParseRuntimeClaims([]byte(raw)); !errors.Is(err, ErrInvalidClaims) {
			t.Errorf("ParseRuntimeClaims(%s) = %v, want ErrInvalidClaims", raw, err)
		}
	}
	ev, err := testImage('a').MarshalEvent()
	if err != nil {
		t.Fatal(err)
	}
	if img, err := ParseImage(ev); err != nil || img != testImage('a') {
		t.Errorf("ParseImage = %+v, %v", img, err)
	}
	idx := testImage('a')
	idx.Index = "sha256:" + strings.Repeat("d", 64)
	if d := idx.Digests(); len(d) != 2 || d[1] != idx.Index {
		t.Errorf("digests %v", d)
	}
}

func FuzzParseRuntimeClaims(f *testing.F) {
	c, _ := (&RuntimeClaims{Images: []Image{testImage('a')}}).Marshal()
	f.Add(c)
	f.Fuzz(func(t *testing.T, b []byte) {
		claims, err := ParseRuntimeClaims(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes, and binds.
		if _, err := claims.Marshal(); err != nil {
			t.Fatalf("valid claims do not encode: %v", err)
		}
	})
}
