package verifier

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"

	"github.com/sccontainers/scc/attest/snp"
	"github.com/sccontainers/scc/attest/tdx"
)

// Real, vendor-signed evidence (see ../snp/testdata/README.md and
// ../tdx/testdata/README.md), and times inside the validity of its
// certificates and collateral.
var (
	snpAt = time.Date(2023, time.January, 1, 0, 0, 0, 0, time.UTC)
	tdxAt = time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)
)

func readTestdata(t testing.TB, path ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(path...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// milanEvidence is go-sev-guest's real Milan report with its VCEK, as
// evidence JSON; the ASK and ARK are AMD's, built into go-sev-guest.
func milanEvidence(t testing.TB, report []byte) []byte {
	t.Helper()
	ev := snp.Evidence{TEE: snp.TEE, Report: report, CertChain: snp.CertChain{VCEK: readTestdata(t, "..", "snp", "testdata", "milan_vcek.der")}}
	b, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func milanReport(t testing.TB) []byte {
	return readTestdata(t, "..", "snp", "testdata", "milan_report.bin")
}

func tdxQuote(t testing.TB) []byte {
	return readTestdata(t, "..", "tdx", "testdata", "tdx_prod_quote_SPR_E4.dat")
}

func tdxEvidence(t testing.TB, quote []byte) []byte {
	t.Helper()
	b, err := (&tdx.Evidence{TEE: tdx.TEE, Quote: quote}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tdxSignedEnd is where the part of a quote that signatures cover (header,
// TD report, attestation key, QE report, QE authentication data, with the
// signatures and length fields between them) ends: at the certification
// data header before the PCK chain's PEM.
func tdxSignedEnd(t testing.TB, quote []byte) int {
	t.Helper()
	i := bytes.Index(quote, []byte("-----BEGIN CERTIFICATE-----"))
	if i < 632+6 {
		t.Fatal("no PCK chain in the quote")
	}
	return i - 6 // certification data type (2 bytes) and size (4 bytes)
}

func TestVendorEvidence(t *testing.T) {
	ctx := context.Background()
	t.Run("snp: real Milan report verifies offline against AMD's roots", func(t *testing.T) {
		c, err := Verify(ctx, snp.TEE, milanEvidence(t, milanReport(t)), Options{Now: snpAt})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := abi.ReportToProto(milanReport(t))
		if err != nil {
			t.Fatal(err)
		}
		if c.TEE != snp.TEE || c.SNP.SigningKey != "VCEK" || c.Measurement != hexOf(rep.GetMeasurement()) ||
			c.PlatformID != hexOf(rep.GetChipId()) || c.ReportData != hexOf(rep.GetReportData()) || !c.Debug {
			t.Fatalf("claims do not describe the report: %+v", c)
		}
		if tcb := c.TCB.(SNPTCB); tcb != (SNPTCB{Bootloader: 2, TEE: 0, SNP: 5, Microcode: 68}) {
			t.Fatalf("TCB = %+v", tcb)
		}
	})
	t.Run("snp: after the VCEK expired", func(t *testing.T) {
		_, err := Verify(ctx, snp.TEE, milanEvidence(t, milanReport(t)), Options{Now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)})
		if !errors.Is(err, snp.ErrSignature) {
			t.Fatalf("Verify = %v, want %v", err, snp.ErrSignature)
		}
	})
	t.Run("snp: without its VCEK", func(t *testing.T) {
		ev, _ := (&snp.Evidence{TEE: snp.TEE, Report: milanReport(t)}).Marshal()
		if _, err := Verify(ctx, snp.TEE, ev, Options{Now: snpAt}); !errors.Is(err, snp.ErrSignature) {
			t.Fatalf("Verify = %v, want %v", err, snp.ErrSignature)
		}
	})
	t.Run("tdx: real quote verifies offline against Intel's root", func(t *testing.T) {
		c, err := Verify(ctx, tdx.TEE, tdxEvidence(t, tdxQuote(t)), Options{Now: tdxAt, TDXSkipTCBCheck: true})
		if err != nil {
			t.Fatal(err)
		}
		if c.TEE != tdx.TEE || c.Measurement != hexOf(c.TDX.MRTD) || c.TDX.FMSPC != "50806f000000" || c.PlatformID == "" || c.Debug {
			t.Fatalf("claims = %+v, tdx %+v", c, c.TDX)
		}
		if tcb := c.TCB.(TDXTCB); tcb.Status != "not checked" || tcb.PCESVN != 11 {
			t.Fatalf("TCB = %+v", tcb)
		}
	})
	t.Run("tdx: Intel's collateral verifies but rates the platform below every TCB level", func(t *testing.T) {
		coll, err := tdx.LoadCollateral(filepath.Join("..", "tdx", "testdata", "collateral"))
		if err != nil {
			t.Fatal(err)
		}
		if !coll.Revocations() {
			t.Fatal("the collateral has no revocation lists")
		}
		_, err = Verify(ctx, tdx.TEE, tdxEvidence(t, tdxQuote(t)), Options{Now: tdxAt, TDXCollateral: coll})
		if !errors.Is(err, tdx.ErrVerification) {
			t.Fatalf("Verify = %v, want %v", err, tdx.ErrVerification)
		}
	})
	t.Run("tdx: collateral required unless the TCB check is skipped", func(t *testing.T) {
		if _, err := Verify(ctx, tdx.TEE, tdxEvidence(t, tdxQuote(t)), Options{Now: tdxAt}); !errors.Is(err, tdx.ErrNoCollateral) {
			t.Fatalf("Verify = %v, want %v", err, tdx.ErrNoCollateral)
		}
	})
}

// Every bit of the signed part of real vendor evidence matters: flipping
// any one must make verification fail.
func TestVendorEvidenceBitFlips(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		tee      string
		raw      []byte
		start    int
		end      int
		evidence func(testing.TB, []byte) []byte
		opts     Options
		// A flip must fail as forged or malformed, not on policy.
		wantErrs []error
	}{
		{
			name: "snp report", tee: snp.TEE, raw: milanReport(t),
			end:      len(abi.SignedComponent(milanReport(t))),
			evidence: milanEvidence,
			opts:     Options{Now: snpAt},
			wantErrs: []error{snp.ErrSignature, snp.ErrMalformedEvidence},
		},
		{
			name: "tdx quote", tee: tdx.TEE, raw: tdxQuote(t),
			end:      tdxSignedEnd(t, tdxQuote(t)),
			evidence: tdxEvidence,
			opts:     Options{Now: tdxAt, TDXSkipTCBCheck: true},
			wantErrs: []error{tdx.ErrVerification, tdx.ErrMalformed},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Verify(ctx, tc.tee, tc.evidence(t, tc.raw), tc.opts); err != nil {
				t.Fatalf("unmodified evidence: %v", err)
			}
			// Every bit of every byte, unless -short: then one bit per
			// byte, rotating through the bit positions.
			for i := tc.start; i < tc.end; i++ {
				for bit := 0; bit < 8; bit++ {
					if testing.Short() && bit != i%8 {
						continue
					}
					flipped := bytes.Clone(tc.raw)
					flipped[i] ^= 1 << bit
					_, err := Verify(ctx, tc.tee, tc.evidence(t, flipped), tc.opts)
					if err == nil {
						t.Fatalf("evidence with bit %d of byte %#x flipped verified", bit, i)
					}
					if !slices.ContainsFunc(tc.wantErrs, func(want error) bool { return errors.Is(err, want) }) {
						t.Fatalf("bit %d of byte %#x flipped: %v, want one of %v", bit, i, err, tc.wantErrs)
					}
				}
			}
		})
	}
}
