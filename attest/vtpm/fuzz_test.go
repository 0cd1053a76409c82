package vtpm

import (
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// FuzzVerify feeds hostile evidence to Verify: it must fail with one of
// its sentinel errors, never panic or accept.
func FuzzVerify(f *testing.F) {
	f.Add([]byte{}, []byte{}, tpm2.Marshal(akTemplate))
	f.Add([]byte("\xffTCG\x80\x18"), []byte{0, 0x18, 0, 0x0b, 0, 1, 1, 0, 1, 1}, tpm2.Marshal(akTemplate))
	f.Fuzz(func(t *testing.T, quote, sig, ak []byte) {
		ev := &Evidence{Quote: quote, Signature: sig, AKPublic: ak, PCRs: map[int][]byte{0: make([]byte, 32)}}
		_, err := Verify(ev, VerifyOptions{Nonce: []byte("n"), InsecureAcceptAnyAK: true})
		if err == nil {
			t.Fatal("Verify accepted fuzzed evidence")
		}
		for _, want := range []error{ErrMalformed, ErrUntrustedAK, ErrBadSignature} {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("Verify error %v wraps no sentinel", err)
	})
}
