package vtpm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Evidence is what a prover sends a verifier. Its byte fields are TPM
// wire encodings so that they can be checked exactly as the TPM signed
// them.
type Evidence struct {
	// Quote is the TPMS_ATTEST the TPM signed.
	Quote []byte
	// Signature is the TPMT_SIGNATURE over Quote.
	Signature []byte
	// PCRs holds the SHA-256 value of each quoted PCR.
	PCRs map[int][]byte
	// AKPublic is the TPMT_PUBLIC of the attestation key.
	AKPublic []byte
	// EventLog is a TCG crypto-agile log or an encoded Log; may be empty.
	EventLog []byte
}

// MaxNonceSize is the largest nonce a quote carries (a TPM2B_DATA holds at
// most a digest).
const MaxNonceSize = 64

// EventLogSource returns the event log to attach to evidence. A Log's
// MarshalBinary method is one; so is ReadEventLogFile's result.
type EventLogSource func() ([]byte, error)

// ReadEventLogFile returns a source that reads the log from path, such as
// /sys/kernel/security/tpm0/binary_bios_measurements.
func ReadEventLogFile(path string) EventLogSource {
	return func() ([]byte, error) { return os.ReadFile(path) }
}

// quoteAttempts bounds retries when a PCR changes between the quote and
// reading the PCR values back.
const quoteAttempts = 3

// GetEvidence quotes the SHA-256 bank of pcrs with nonce (1 to
// MaxNonceSize bytes) and attaches the event log from eventLog (nil for
// none). The AK is created for the call and flushed after it; being a
// primary key it is the same key on every call to the same TPM.
//
// The log is read after the quote. For it to replay to the quoted values
// nothing may be measured in between: a writer must extend and log each
// event together, and the verifier retries on ErrEventLogMismatch.
func GetEvidence(ctx context.Context, tpm transport.TPM, nonce []byte, pcrs []int, eventLog EventLogSource) (*Evidence, error) {
	if len(nonce) == 0 || len(nonce) > MaxNonceSize {
		return nil, fmt.Errorf("get evidence: nonce is %d bytes, want 1 to %d", len(nonce), MaxNonceSize)
	}
	sel, err := pcrSelection(pcrs)
	if err != nil {
		return nil, fmt.Errorf("get evidence: %w", err)
	}
	pcrs = sortedPCRs(pcrs)

	ak, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(akTemplate),
	}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("get evidence: create attestation key: %w", err)
	}
	defer func() {
		// A transient object left loaded would exhaust the TPM's slots.
		_, _ = tpm2.FlushContext{FlushHandle: ak.ObjectHandle}.Execute(tpm)
	}()
	akPub, err := ak.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("get evidence: attestation key public: %w", err)
	}

	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("get evidence: %w", err)
		}
		q, err := tpm2.Quote{
			SignHandle: tpm2.AuthHandle{
				Handle: ak.ObjectHandle,
				Name:   ak.Name,
				Auth:   tpm2.PasswordAuth(nil),
			},
			QualifyingData: tpm2.TPM2BData{Buffer: nonce},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			PCRSelect:      sel,
		}.Execute(tpm)
		if err != nil {
			return nil, fmt.Errorf("get evidence: quote: %w", err)
		}
		values, err := ReadPCRs(tpm, pcrs)
		if err != nil {
			return nil, fmt.Errorf("get evidence: %w", err)
		}
		attest, err := q.Quoted.Contents()
		if err != nil {
			return nil, fmt.Errorf("get evidence: decode quote: %w", err)
		}
		info, err := attest.Attested.Quote()
		if err != nil {
			return nil, fmt.Errorf("get evidence: decode quote: %w", err)
		}
		if !bytes.Equal(pcrDigest(pcrs, values), info.PCRDigest.Buffer) {
			if attempt < quoteAttempts {
				continue // a PCR was extended after the quote
			}
			return nil, fmt.Errorf("get evidence: PCRs keep changing during the quote: %w", ErrPCRDigestMismatch)
		}
		ev := &Evidence{
			Quote:     q.Quoted.Bytes(),
			Signature: tpm2.Marshal(q.Signature),
			PCRs:      values,
			AKPublic:  tpm2.Marshal(akPub),
		}
		if eventLog != nil {
			if ev.EventLog, err = eventLog(); err != nil {
				return nil, fmt.Errorf("get evidence: read event log: %w", err)
			}
		}
		return ev, nil
	}
}

// ReadPCRs reads the SHA-256 values of pcrs.
func ReadPCRs(tpm transport.TPM, pcrs []int) (map[int][]byte, error) {
	want := sortedPCRs(pcrs)
	out := make(map[int][]byte, len(want))
	// TPM2_PCR_Read returns at most eight digests a call and reports
	// which it returned, so ask again for the rest.
	for len(out) < len(want) {
		var rest []int
		for _, p := range want {
			if _, ok := out[p]; !ok {
				rest = append(rest, p)
			}
		}
		sel, err := pcrSelection(rest)
		if err != nil {
			return nil, fmt.Errorf("read pcrs: %w", err)
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: sel}.Execute(tpm)
		if err != nil {
			return nil, fmt.Errorf("read pcrs: %w", err)
		}
		got, err := selectedPCRs(rsp.PCRSelectionOut)
		if err != nil {
			return nil, fmt.Errorf("read pcrs: %w", err)
		}
		if len(got) == 0 || len(got) != len(rsp.PCRValues.Digests) {
			return nil, errors.New("read pcrs: TPM returned no or mismatched PCR values")
		}
		for i, p := range got {
			if _, asked := out[p]; asked || !slices.Contains(rest, p) {
				return nil, fmt.Errorf("read pcrs: TPM returned unrequested pcr %d", p)
			}
			out[p] = bytes.Clone(rsp.PCRValues.Digests[i].Buffer)
		}
	}
	return out, nil
}

// ExtendPCR extends digest into pcr's SHA-256 bank (and only that bank:
// the other banks are not used by this package).
func ExtendPCR(tpm transport.TPM, pcr int, digest [32]byte) error {
	if pcr < 0 || pcr >= NumPCRs {
		return fmt.Errorf("extend pcr: pcr %d out of range", pcr)
	}
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{
			{HashAlg: tpm2.TPMAlgSHA256, Digest: digest[:]},
		}},
	}.Execute(tpm)
	if err != nil {
		return fmt.Errorf("extend pcr %d: %w", pcr, err)
	}
	return nil
}

func sortedPCRs(pcrs []int) []int {
	s := slices.Clone(pcrs)
	slices.Sort(s)
	return slices.Compact(s)
}

// pcrSelection encodes pcrs as a SHA-256 bank selection.
func pcrSelection(pcrs []int) (tpm2.TPMLPCRSelection, error) {
	if len(pcrs) == 0 {
		return tpm2.TPMLPCRSelection{}, errors.New("no PCRs selected")
	}
	bits := make([]byte, NumPCRs/8)
	for _, p := range pcrs {
		if p < 0 || p >= NumPCRs {
			return tpm2.TPMLPCRSelection{}, fmt.Errorf("pcr %d out of range", p)
		}
		bits[p/8] |= 1 << (p % 8)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
		{Hash: tpm2.TPMAlgSHA256, PCRSelect: bits},
	}}, nil
}

// selectedPCRs decodes a selection that must cover only the SHA-256 bank,
// returning the PCR indices in ascending order (the order in which the
// TPM digests and returns them).
func selectedPCRs(sel tpm2.TPMLPCRSelection) ([]int, error) {
	var out []int
	for _, s := range sel.PCRSelections {
		if s.Hash != tpm2.TPMAlgSHA256 {
			if slices.ContainsFunc(s.PCRSelect, func(b byte) bool { return b != 0 }) {
				return nil, fmt.Errorf("selection of hash algorithm 0x%x: only SHA-256 is supported", uint16(s.Hash))
			}
			continue
		}
		if out != nil {
			return nil, errors.New("SHA-256 bank selected twice")
		}
		out = []int{}
		for i, b := range s.PCRSelect {
			for bit := 0; bit < 8; bit++ {
				if b&(1<<bit) == 0 {
					continue
				}
				p := i*8 + bit
				if p >= NumPCRs {
					return nil, fmt.Errorf("pcr %d out of range", p)
				}
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// pcrDigest is the quote's PCR digest: SHA-256 over the selected values
// in ascending PCR order. Callers make sure every PCR has a value.
func pcrDigest(pcrs []int, values map[int][]byte) []byte {
	h := sha256.New()
	for _, p := range pcrs {
		h.Write(values[p])
	}
	return h.Sum(nil)
}
