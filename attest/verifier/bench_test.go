package verifier

import (
	"context"
	"testing"

	"github.com/sccontainers/scc/attest/snp"
	"github.com/sccontainers/scc/attest/tdx"
)

// BenchmarkVerify measures the verification of real vendor evidence, the
// key broker's work per attestation: an SNP report against AMD's roots
// and a TDX quote against Intel's, offline.
//
//	go test -run '^$' -bench Verify ./attest/verifier/
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	b.Run("snp", func(b *testing.B) {
		ev := milanEvidence(b, milanReport(b))
		for b.Loop() {
			if _, err := Verify(ctx, snp.TEE, ev, Options{Now: snpAt}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tdx", func(b *testing.B) {
		ev := tdxEvidence(b, tdxQuote(b))
		for b.Loop() {
			if _, err := Verify(ctx, tdx.TEE, ev, Options{Now: tdxAt, TDXSkipTCBCheck: true}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
