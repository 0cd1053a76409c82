package vtpm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sccontainers/scc/attest/vtpm"
)

func recorded(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "evidence.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeEvidence(t *testing.T) {
	good := string(recorded(t))
	ev, err := vtpm.DecodeEvidence([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	again, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := vtpm.DecodeEvidence(again)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Quote, ev.Quote) || !bytes.Equal(back.EventLog, ev.EventLog) || len(back.PCRs) != 3 || !bytes.Equal(back.PCRs[10], ev.PCRs[10]) {
		t.Fatal("evidence does not survive a round trip")
	}
	var viaJSON vtpm.Evidence
	if err := json.Unmarshal([]byte(good), &viaJSON); err != nil || !bytes.Equal(viaJSON.AKPublic, ev.AKPublic) {
		t.Fatalf("json.Unmarshal = %v", err)
	}

	replace := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("recorded evidence lacks %q", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	for _, tc := range []struct{ name, in string }{
		{"not JSON", "quote"},
		{"unknown member", replace(`"tee"`, `"extra": 1, "tee"`)},
		{"trailing data", good + "{}"},
		{"other TEE", replace(`"tee": "vtpm"`, `"tee": "snp"`)},
		{"no quote", replace(`"quote"`, `"unused_quote"`)},
		{"PCR index out of range", replace(`"10":`, `"24":`)},
		{"PCR index not canonical", replace(`"9":`, `"09":`)},
		{"PCR index negative", replace(`"9":`, `"-1":`)},
		{"PCR value short", replace(`"0": "00`, `"0": "`)},
		{"PCR value not hex", replace(`"0": "00`, `"0": "zz`)},
		{"oversized quote", replace(`"quote": "`, `"quote": "`+strings.Repeat("AAAA", 2000))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := vtpm.DecodeEvidence([]byte(tc.in)); !errors.Is(err, vtpm.ErrMalformed) {
				t.Fatalf("DecodeEvidence = %v, want %v", err, vtpm.ErrMalformed)
			}
		})
	}
}

func TestQualifyingData(t *testing.T) {
	var rd [64]byte
	for i := range rd {
		rd[i] = byte(i)
	}
	q := vtpm.QualifyingData(rd)
	if len(q) != vtpm.QualifyingDataSize || !bytes.Equal(q, rd[:32]) {
		t.Fatalf("QualifyingData = %x", q)
	}
	q[0] = 0xff
	if rd[0] != 0 {
		t.Fatal("QualifyingData aliases its input")
	}
}

func TestAttester(t *testing.T) {
	tpm := newTPM(t)
	var log vtpm.Log
	measure(t, tpm, &log, 11, 7, "workload")
	a := &vtpm.Attester{TPM: tpm, PCRs: []int{11}, EventLog: log.MarshalBinary}
	if a.TEE() != vtpm.TEE {
		t.Fatalf("TEE() = %q", a.TEE())
	}
	var rd [64]byte
	copy(rd[:], "session binding")
	data, err := a.Evidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := vtpm.DecodeEvidence(data)
	if err != nil {
		t.Fatal(err)
	}
	akPub, err := vtpm.AKPublic(tpm)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(akPub, ev.AKPublic) {
		t.Fatal("AKPublic differs from the key that signs quotes")
	}
	pcr11 := log.Replay()[11]
	claims, err := vtpm.Verify(ev, vtpm.VerifyOptions{
		Nonce:        vtpm.QualifyingData(rd),
		TrustedAKs:   [][32]byte{vtpm.AKDigest(akPub)},
		ExpectedPCRs: map[int][]byte{11: pcr11[:]},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(claims.Nonce, vtpm.QualifyingData(rd)) {
		t.Fatalf("claims nonce = %x", claims.Nonce)
	}
	if _, err := (&vtpm.Attester{PCRs: []int{11}}).Evidence(context.Background(), rd); err == nil {
		t.Fatal("Evidence without a TPM succeeded")
	}
}

func TestOpenDeviceRefusesNonDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tpm")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if tpm, err := vtpm.OpenDevice(path); err == nil {
		tpm.Close()
		t.Fatal("OpenDevice(regular file) succeeded")
	}
}

// FuzzDecodeEvidence feeds hostile evidence JSON to the decoder and what
// it accepts to Verify: errors only, never a panic or an acceptance.
func FuzzDecodeEvidence(f *testing.F) {
	good := recorded(f)
	f.Add(good)
	f.Add(bytes.Replace(good, []byte(`"10"`), []byte(`"23"`), 1))
	f.Add([]byte(`{"tee":"vtpm","quote":"AA==","signature":"AA==","pcrs":{"0":"` + strings.Repeat("00", 32) + `"},"ak_public":"AA=="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := vtpm.DecodeEvidence(data)
		if err != nil {
			if !errors.Is(err, vtpm.ErrMalformed) {
				t.Fatalf("DecodeEvidence error %v does not wrap ErrMalformed", err)
			}
			return
		}
		_, _ = ev.QuoteNonce()
		// No AK is trusted: whatever decodes must still be refused.
		if _, err := vtpm.Verify(ev, vtpm.VerifyOptions{Nonce: []byte("n")}); err == nil {
			t.Fatal("Verify accepted evidence with no trusted AK")
		}
	})
}
