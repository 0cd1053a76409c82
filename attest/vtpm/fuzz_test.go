package vtpm

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// FuzzVerify feeds hostile quotes, signatures and attestation keys to
// Verify, seeded with the recorded swtpm evidence of testdata: it must
// fail with one of its sentinel errors, never panic, and accept only the
// recorded quote.
func FuzzVerify(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "evidence.json"))
	if err != nil {
		f.Fatal(err)
	}
	rec, err := DecodeEvidence(data)
	if err != nil {
		f.Fatal(err)
	}
	nonce, err := rec.QuoteNonce()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rec.Quote, rec.Signature, rec.AKPublic)
	f.Add([]byte{}, []byte{}, tpm2.Marshal(akTemplate))
	f.Add([]byte("\xffTCG\x80\x18"), []byte{0, 0x18, 0, 0x0b, 0, 1, 1, 0, 1, 1}, tpm2.Marshal(akTemplate))
	sentinels := []error{ErrMalformed, ErrUntrustedAK, ErrBadSignature, ErrNonceMismatch, ErrPCRDigestMismatch, ErrEventLogMismatch, ErrPolicy}
	f.Fuzz(func(t *testing.T, quote, sig, ak []byte) {
		ev := &Evidence{Quote: quote, Signature: sig, AKPublic: ak, PCRs: rec.PCRs, EventLog: rec.EventLog}
		_, err := Verify(ev, VerifyOptions{Nonce: nonce, InsecureAcceptAnyAK: true})
		if err == nil {
			if !bytes.Equal(quote, rec.Quote) || !bytes.Equal(ak, rec.AKPublic) {
				t.Fatal("Verify accepted a quote the TPM did not make")
			}
			return
		}
		for _, want := range sentinels {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("Verify error %v wraps no sentinel", err)
	})
}
