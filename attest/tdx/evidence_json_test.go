package tdx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDecodeEvidence(t *testing.T) {
	good, err := (&Evidence{Quote: sampleQuote()}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(good, []byte(`"tee":"tdx"`)) {
		t.Fatalf("Marshal does not name the TEE: %.60s", good)
	}
	ev, err := DecodeEvidence(good)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ev.Quote, sampleQuote()) || ev.TEE != TEE {
		t.Fatal("evidence does not survive a round trip")
	}
	s := string(good)
	for _, tc := range []struct {
		name string
		in   string
		want error
	}{
		{"not JSON", "quote", ErrMalformed},
		{"unknown member", strings.Replace(s, `"tee"`, `"x":1,"tee"`, 1), ErrMalformed},
		{"trailing data", s + "{}", ErrMalformed},
		{"other TEE", strings.Replace(s, `"tee":"tdx"`, `"tee":"snp"`, 1), ErrWrongTEE},
		{"truncated quote", `{"tee":"tdx","quote":"BAACAIEAAAA="}`, ErrMalformed},
		{"no quote", `{"tee":"tdx"}`, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeEvidence([]byte(tc.in)); !errors.Is(err, tc.want) {
				t.Fatalf("DecodeEvidence = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAttester(t *testing.T) {
	var rd [64]byte
	copy(rd[:], sampleBody(t).GetReportData())
	a := &Attester{Provider: fakeProvider{quote: sampleQuote()}}
	if a.TEE() != "tdx" {
		t.Fatalf("TEE() = %q", a.TEE())
	}
	data, err := a.Evidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := DecodeEvidence(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ev.Quote, Options{SkipTCBCheck: true, Now: sampleNow, Policy: Policy{ReportData: rd[:]}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Evidence(context.Background(), [64]byte{1}); !errors.Is(err, ErrReportDataMismatch) {
		t.Fatalf("Evidence(other report data) = %v, want %v", err, ErrReportDataMismatch)
	}
}

func TestLoadCollateral(t *testing.T) {
	real := filepath.Join("testdata", "collateral")
	c, err := LoadCollateral(real)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Revocations() || len(c.TCBInfo) == 0 || len(c.QEIdentityIssuerChain) == 0 {
		t.Fatalf("collateral incomplete: revocations %v", c.Revocations())
	}
	// Intel's collateral verifies (signatures, validity, CRLs) but rates
	// the sample platform below every TCB level it lists.
	_, err = Verify(sampleQuote(), Options{Collateral: c, CheckRevocations: true, Now: sampleNow})
	if !errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), "no matching TCB level") {
		t.Fatalf("Verify with Intel's collateral = %v, want the TCB level refusal", err)
	}

	copyDir := func(t *testing.T, skip ...string) string {
		dir := t.TempDir()
		entries, _ := os.ReadDir(real)
		for _, e := range entries {
			if slices.Contains(skip, e.Name()) {
				continue
			}
			b, _ := os.ReadFile(filepath.Join(real, e.Name()))
			if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	t.Run("without revocation lists", func(t *testing.T) {
		c, err := LoadCollateral(copyDir(t, CollateralPCKCRL, CollateralPCKCRLIssuerChain, CollateralRootCACRL))
		if err != nil || c.Revocations() {
			t.Fatalf("LoadCollateral = %v, revocations %v", err, c != nil && c.Revocations())
		}
	})
	t.Run("part of the revocation lists", func(t *testing.T) {
		if _, err := LoadCollateral(copyDir(t, CollateralRootCACRL)); !errors.Is(err, ErrNoCollateral) {
			t.Fatalf("LoadCollateral = %v, want %v", err, ErrNoCollateral)
		}
	})
	t.Run("no TCB info", func(t *testing.T) {
		if _, err := LoadCollateral(copyDir(t, CollateralTCBInfo)); err == nil {
			t.Fatal("LoadCollateral succeeded without TCB info")
		}
	})
	t.Run("empty QE identity", func(t *testing.T) {
		dir := copyDir(t)
		if err := os.WriteFile(filepath.Join(dir, CollateralQEIdentity), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCollateral(dir); !errors.Is(err, ErrNoCollateral) {
			t.Fatalf("LoadCollateral = %v, want %v", err, ErrNoCollateral)
		}
	})
}

func TestClaimsJSON(t *testing.T) {
	c, err := Verify(sampleQuote(), Options{SkipTCBCheck: true, Now: sampleNow})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["mrtd"] != "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb" ||
		m["fmspc"] != "50806f000000" || m["tcb_status"] != "not checked (no collateral)" || m["pce_svn"] != float64(11) {
		t.Fatalf("claims JSON = %s", b)
	}
	if rtmrs := m["rtmrs"].([]any); len(rtmrs) != 4 || rtmrs[3] != strings.Repeat("00", 48) {
		t.Fatalf("rtmrs = %v", rtmrs)
	}
}

// FuzzDecodeEvidence feeds hostile evidence to the decoder, which parses
// the quote: errors only, never a panic (go-tdx-guest's parser needs the
// recover in parseQuote for that).
func FuzzDecodeEvidence(f *testing.F) {
	good, err := (&Evidence{Quote: sampleQuote()}).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"tee":"tdx","quote":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeEvidence(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrWrongTEE) {
				t.Fatalf("DecodeEvidence error %v wraps no sentinel", err)
			}
			return
		}
		if _, err := parseQuote(ev.Quote); err != nil {
			t.Fatalf("accepted evidence whose quote does not parse: %v", err)
		}
	})
}

// FuzzParseQuote feeds raw quote bytes, seeded with the real quote, to
// the parser and the verifier.
func FuzzParseQuote(f *testing.F) {
	f.Add(sampleQuote())
	f.Add(sampleQuote()[:1000])
	f.Fuzz(func(t *testing.T, raw []byte) {
		q, err := parseQuote(raw)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parseQuote error %v does not wrap ErrMalformed", err)
			}
			return
		}
		_ = claimsOf(q)
		// A change in the signed part (everything before the PCK chain's
		// certification data header) must not verify.
		orig := sampleQuote()
		signedEnd := bytes.Index(orig, []byte("-----BEGIN CERTIFICATE-----")) - 6
		if len(raw) == len(orig) && !bytes.Equal(raw[:signedEnd], orig[:signedEnd]) {
			if _, err := Verify(raw, Options{SkipTCBCheck: true, Now: sampleNow}); err == nil {
				t.Fatal("a quote modified in its signed part verified")
			}
		}
	})
}
