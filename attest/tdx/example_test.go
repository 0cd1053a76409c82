package tdx_test

import (
	"fmt"
	"time"

	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/sccontainers/scc/attest/tdx"
)

// A verifier checks a quote against the measurements it expects. This
// uses go-tdx-guest's sample quote and skips the TCB level check, which
// needs Intel PCS collateral (Options.Collateral).
func ExampleVerify() {
	claims, err := tdx.Verify(testdata.RawQuote, tdx.Options{
		SkipTCBCheck: true,
		Now:          time.Date(2023, time.July, 1, 0, 0, 0, 0, time.UTC),
		Policy:       tdx.Policy{MRConfigID: make([]byte, 48)},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("MRTD %x...\ndebug: %v\n", claims.MRTD[:8], claims.Debug)
	// Output:
	// MRTD 6363b8043668a3ad...
	// debug: false
}
