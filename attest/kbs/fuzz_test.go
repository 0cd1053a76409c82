package kbs

import (
	"errors"
	"slices"
	"testing"

	"github.com/sccontainers/scc/attest/policy"
)

// FuzzDecodeAuthRequest feeds untrusted /auth bodies to the decoder: it
// accepts only a versioned request for a TEE type the broker verifies.
func FuzzDecodeAuthRequest(f *testing.F) {
	f.Add([]byte(`{"version":"0.1.0","tee":"snp","extra-params":{}}`))
	f.Add([]byte(`{"version":"0.1.0","tee":"vtpm","extra-params":""}`))
	f.Add([]byte(`{"version":"0.1.0","tee":"intel-sgx"}`))
	f.Add([]byte(`tee=sim`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeAuthRequest(body)
		if err != nil {
			if !errors.Is(err, errBadAuth) {
				t.Fatalf("error %v does not wrap errBadAuth", err)
			}
			return
		}
		if req.Version == "" || !slices.Contains(policy.TEEs, req.TEE) {
			t.Fatalf("accepted %+v", req)
		}
	})
}
