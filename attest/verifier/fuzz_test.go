package verifier

import (
	"context"
	"testing"

	"github.com/sccontainers/scc/attest/policy"
	"github.com/sccontainers/scc/attest/sim"
)

// FuzzVerify feeds hostile evidence of every TEE type through the whole
// verification path a key broker runs, seeded with real evidence of each.
func FuzzVerify(f *testing.F) {
	auth, err := sim.NewAuthority(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	simEv, err := auth.Attester(sim.Config{}).Evidence(context.Background(), [64]byte{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), milanEvidence(f, milanReport(f)))
	f.Add(uint8(1), tdxEvidence(f, tdxQuote(f)))
	f.Add(uint8(2), readTestdata(f, "..", "vtpm", "testdata", "evidence.json"))
	f.Add(uint8(3), simEv)
	doc, err := policy.Parse([]byte(`{"attestation":{"sim":{"allow":true,"roots":["` + auth.Root().String() + `"],"measurements":["` + zero48 + `"]}}}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, which uint8, evidence []byte) {
		tee := policy.TEEs[int(which)%len(policy.TEEs)]
		opts := Options{Now: snpAt, TDXSkipTCBCheck: true}
		if tee == "tdx" {
			opts.Now = tdxAt
		}
		if tee == sim.TEE {
			opts.Policy = &doc
		}
		c, err := Verify(context.Background(), tee, evidence, opts)
		if err == nil && c.TEE != tee {
			t.Fatalf("verified %s evidence says TEE %q", tee, c.TEE)
		}
	})
}
