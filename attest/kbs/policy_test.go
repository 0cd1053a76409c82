package kbs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAllowResource(t *testing.T) {
	m1, m2 := strings.Repeat("aa", 48), strings.Repeat("bb", 48)
	p := Policy{Resources: map[string]ResourceRule{
		"hw/*/*":        {TEEs: []string{"snp"}},
		"hw/key/pinned": {Measurements: []string{strings.ToUpper(m1)}},
		"*/*/*":         {TEEs: []string{"snp", "sim"}},
	}}
	tests := []struct {
		resource string
		claims   tokenClaims
		allow    bool
	}{
		{"default/key/1", tokenClaims{TEE: "sim", Measurement: m2}, true},
		{"hw/key/1", tokenClaims{TEE: "snp", Measurement: m2}, true},
		{"hw/key/1", tokenClaims{TEE: "sim", Measurement: m1}, false},
		// Two rules match: both apply.
		{"hw/key/pinned", tokenClaims{TEE: "snp", Measurement: m1}, true},
		{"hw/key/pinned", tokenClaims{TEE: "snp", Measurement: m2}, false},
		{"hw/key/pinned", tokenClaims{TEE: "sim", Measurement: m1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.resource+" "+tc.claims.TEE, func(t *testing.T) {
			err := p.allowResource(tc.resource, tc.claims)
			if tc.allow != (err == nil) {
				t.Fatalf("allowResource() = %v, want allow %v", err, tc.allow)
			}
			if err != nil && !errors.Is(err, ErrResourceDenied) {
				t.Fatalf("error %v does not wrap ErrResourceDenied", err)
			}
		})
	}
}

func TestParsePolicy(t *testing.T) {
	m := strings.Repeat("ab", 48)
	root := strings.Repeat("cd", 32)
	tests := []struct {
		name    string
		doc     string
		wantErr bool
	}{
		{name: "empty", doc: `{}`},
		{name: "sim", doc: `{"attestation":{"sim":{"allow":true,"roots":["` + root + `"],"measurements":["` + m + `"]}}}`},
		{name: "snp with everything", doc: `{"attestation":{"snp":{"allow":true,"measurements":["` + m + `"],"allow_debug":true,"host_data":"` + root + `","min_tcb":{"bootloader":1,"tee":0,"snp":8,"microcode":115}}}}`},
		{name: "disabled sim needs nothing", doc: `{"attestation":{"sim":{"allow":false}}}`},
		{name: "bad root", doc: `{"attestation":{"sim":{"allow":true,"roots":["xyz"],"measurements":["` + m + `"]}}}`, wantErr: true},
		{name: "roots on snp", doc: `{"attestation":{"snp":{"allow":true,"roots":["` + root + `"],"measurements":["` + m + `"]}}}`, wantErr: true},
		{name: "short host data", doc: `{"attestation":{"snp":{"allow":true,"host_data":"ab","measurements":["` + m + `"]}}}`, wantErr: true},
		{name: "unknown top-level member", doc: `{"attestations":{}}`, wantErr: true},
		{name: "trailing data", doc: `{} {}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(tc.doc))
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidPolicyDocument) {
					t.Fatalf("ParsePolicy() = %v, want %v", err, ErrInvalidPolicyDocument)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePolicy() = %v", err)
			}
		})
	}
}

func TestStoreCorruption(t *testing.T) {
	dir := t.TempDir()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.put("a/b/c", []byte("secret")); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, storeDataFile))
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)-1] ^= 1
	for name, content := range map[string][]byte{
		"bit flipped": flipped,
		"truncated":   data[:10],
		"other magic": append([]byte("XXXXXXXX"), data[8:]...),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, storeDataFile), content, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := openStore(dir); err == nil {
				t.Fatal("openStore() accepted a corrupted file")
			}
		})
	}
	if _, err := s.get("x/y/z"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get(unknown) = %v, want %v", err, ErrNotFound)
	}
}
