package vtpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// Errors Verify returns, wrapped with detail; match with errors.Is.
var (
	// ErrMalformed means the evidence could not be decoded.
	ErrMalformed = errors.New("vtpm: malformed evidence")
	// ErrUntrustedAK means the AK is not one the caller trusts, or is not
	// a restricted signing key.
	ErrUntrustedAK = errors.New("vtpm: attestation key not trusted")
	// ErrBadSignature means the quote's signature does not verify with
	// the AK.
	ErrBadSignature = errors.New("vtpm: bad quote signature")
	// ErrNonceMismatch means the quote was not made for the expected
	// nonce: it is stale or meant for another verifier.
	ErrNonceMismatch = errors.New("vtpm: quote nonce mismatch")
	// ErrPCRDigestMismatch means the PCR values supplied are not the
	// ones the TPM quoted.
	ErrPCRDigestMismatch = errors.New("vtpm: PCR values do not match the quote")
	// ErrEventLogMismatch means the event log does not replay to the
	// quoted PCR values.
	ErrEventLogMismatch = errors.New("vtpm: event log does not match the quoted PCRs")
	// ErrPolicy means a quoted PCR does not hold the value the caller
	// expects, or an expected PCR was not quoted.
	ErrPolicy = errors.New("vtpm: PCR policy not met")
)

// VerifyOptions says what Verify must check.
type VerifyOptions struct {
	// Nonce is the nonce the verifier sent; it is required.
	Nonce []byte
	// TrustedAKs lists the AKDigest of each AK the caller trusts.
	TrustedAKs [][32]byte
	// InsecureAcceptAnyAK accepts an AK that is not in TrustedAKs. A
	// quote then proves nothing about which TPM made it: for tests, or
	// for callers that check Claims.AKDigest against a TEE report
	// themselves right after Verify.
	InsecureAcceptAnyAK bool
	// ExpectedPCRs are SHA-256 values that the quoted PCRs must hold.
	// Each listed PCR must be quoted.
	ExpectedPCRs map[int][]byte
}

// Claims is what verified evidence establishes.
type Claims struct {
	// AKDigest identifies the AK that signed the quote.
	AKDigest [32]byte
	// Nonce is the quote's qualifying data, VerifyOptions.Nonce.
	Nonce []byte
	// PCRs are the quoted SHA-256 PCR values.
	PCRs map[int][]byte
	// Events are the event log's events for quoted PCRs, in log order;
	// each PCR's events replay to its quoted value.
	Events []Event
	// Clock, ResetCount and RestartCount are the TPM's clock state at
	// the quote; a verifier tracking a TPM sees reboots in them.
	Clock        uint64
	ResetCount   uint32
	RestartCount uint32
}

// Verify checks evidence as described in the package documentation and
// returns what it establishes.
func Verify(ev *Evidence, opts VerifyOptions) (*Claims, error) {
	if ev == nil {
		return nil, fmt.Errorf("verify: %w: no evidence", ErrMalformed)
	}
	if len(opts.Nonce) == 0 {
		return nil, errors.New("verify: VerifyOptions.Nonce is required")
	}

	// The AK first: nothing in a quote means anything until its key is
	// trusted and the signature checks out.
	akDigest := AKDigest(ev.AKPublic)
	if !opts.InsecureAcceptAnyAK && !containsDigest(opts.TrustedAKs, akDigest) {
		return nil, fmt.Errorf("verify: %w: AK digest %x is not pinned", ErrUntrustedAK, akDigest)
	}
	akPub, err := decodeAK(ev.AKPublic)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if err := checkSignature(akPub, ev.Quote, ev.Signature); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}

	attest, err := decodeCanonical[tpm2.TPMSAttest](ev.Quote)
	if err != nil {
		return nil, fmt.Errorf("verify: quote: %w", err)
	}
	if attest.Magic != tpm2.TPMGeneratedValue || attest.Type != tpm2.TPMSTAttestQuote {
		return nil, fmt.Errorf("verify: %w: not a TPM-generated quote", ErrMalformed)
	}
	if subtle.ConstantTimeCompare(attest.ExtraData.Buffer, opts.Nonce) != 1 {
		return nil, fmt.Errorf("verify: %w", ErrNonceMismatch)
	}
	info, err := attest.Attested.Quote()
	if err != nil {
		return nil, fmt.Errorf("verify: %w: %v", ErrMalformed, err)
	}

	quoted, err := selectedPCRs(info.PCRSelect)
	if err != nil {
		return nil, fmt.Errorf("verify: %w: quote selection: %v", ErrMalformed, err)
	}
	if !slices.Equal(quoted, slices.Sorted(maps.Keys(ev.PCRs))) {
		return nil, fmt.Errorf("verify: %w: values supplied for PCRs %v, quote covers %v",
			ErrPCRDigestMismatch, slices.Sorted(maps.Keys(ev.PCRs)), quoted)
	}
	for _, p := range quoted {
		if len(ev.PCRs[p]) != sha256.Size {
			return nil, fmt.Errorf("verify: %w: pcr %d value is %d bytes", ErrMalformed, p, len(ev.PCRs[p]))
		}
	}
	if subtle.ConstantTimeCompare(pcrDigest(quoted, ev.PCRs), info.PCRDigest.Buffer) != 1 {
		return nil, fmt.Errorf("verify: %w", ErrPCRDigestMismatch)
	}

	events, err := checkEventLog(ev.EventLog, ev.PCRs)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}

	for _, p := range slices.Sorted(maps.Keys(opts.ExpectedPCRs)) {
		want := opts.ExpectedPCRs[p]
		got, ok := ev.PCRs[p]
		if !ok {
			return nil, fmt.Errorf("verify: %w: pcr %d not quoted", ErrPolicy, p)
		}
		if subtle.ConstantTimeCompare(got, want) != 1 {
			return nil, fmt.Errorf("verify: %w: pcr %d is %x, want %x", ErrPolicy, p, got, want)
		}
	}

	pcrs := make(map[int][]byte, len(ev.PCRs))
	for p, v := range ev.PCRs {
		pcrs[p] = bytes.Clone(v)
	}
	return &Claims{
		AKDigest:     akDigest,
		Nonce:        bytes.Clone(attest.ExtraData.Buffer),
		PCRs:         pcrs,
		Events:       events,
		Clock:        attest.ClockInfo.Clock,
		ResetCount:   attest.ClockInfo.ResetCount,
		RestartCount: attest.ClockInfo.RestartCount,
	}, nil
}

func containsDigest(list [][32]byte, d [32]byte) bool {
	found := 0
	for _, x := range list {
		found |= subtle.ConstantTimeCompare(x[:], d[:])
	}
	return found == 1
}

// decodeCanonical decodes a TPM structure and insists that b is exactly
// its encoding, so no trailing bytes ride along unnoticed.
func decodeCanonical[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](b []byte) (t *T, err error) {
	// go-tpm's reflective decoder is not written for hostile input;
	// turn a panic into an error rather than let it crash a verifier.
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("%w: %v", ErrMalformed, r)
		}
	}()
	v, err := tpm2.Unmarshal[T, P](b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(tpm2.Marshal(*v), b) {
		return nil, fmt.Errorf("%w: trailing or non-canonical bytes", ErrMalformed)
	}
	return v, nil
}

// decodeAK parses the AK and checks it is a key whose quotes mean
// something: restricted (the TPM signs only what it generated) and
// non-duplicable, ECDSA P-256 with SHA-256 names.
func decodeAK(b []byte) (*ecdsa.PublicKey, error) {
	pub, err := decodeCanonical[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, fmt.Errorf("ak: %w", err)
	}
	a := pub.ObjectAttributes
	if !a.Restricted || !a.SignEncrypt || a.Decrypt || !a.FixedTPM || !a.FixedParent {
		return nil, fmt.Errorf("%w: not a restricted, TPM-bound signing key", ErrUntrustedAK)
	}
	if pub.Type != tpm2.TPMAlgECC || pub.NameAlg != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("%w: AK must be an ECC key with SHA-256 names", ErrUntrustedAK)
	}
	params, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, fmt.Errorf("ak: %w: %v", ErrMalformed, err)
	}
	if params.CurveID != tpm2.TPMECCNistP256 {
		return nil, fmt.Errorf("%w: AK curve 0x%x, want P-256", ErrUntrustedAK, uint16(params.CurveID))
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("ak: %w: %v", ErrMalformed, err)
	}
	key, err := tpm2.ECDSAPub(params, point)
	if err != nil {
		return nil, fmt.Errorf("ak: %w: %v", ErrMalformed, err)
	}
	if !key.Curve.IsOnCurve(key.X, key.Y) {
		return nil, fmt.Errorf("ak: %w: public point not on curve", ErrMalformed)
	}
	return key, nil
}

func checkSignature(key *ecdsa.PublicKey, quote, sigBytes []byte) error {
	sig, err := decodeCanonical[tpm2.TPMTSignature](sigBytes)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	if sig.SigAlg != tpm2.TPMAlgECDSA {
		return fmt.Errorf("%w: signature algorithm 0x%x, want ECDSA", ErrBadSignature, uint16(sig.SigAlg))
	}
	e, err := sig.Signature.ECDSA()
	if err != nil {
		return fmt.Errorf("signature: %w: %v", ErrMalformed, err)
	}
	if e.Hash != tpm2.TPMAlgSHA256 {
		return fmt.Errorf("%w: signature hash 0x%x, want SHA-256", ErrBadSignature, uint16(e.Hash))
	}
	digest := sha256.Sum256(quote)
	r := new(big.Int).SetBytes(e.SignatureR.Buffer)
	s := new(big.Int).SetBytes(e.SignatureS.Buffer)
	if !ecdsa.Verify(key, digest[:], r, s) {
		return ErrBadSignature
	}
	return nil
}

// checkEventLog replays the log and compares each quoted PCR that has
// events with its quoted value. Quoted PCRs without events are not
// explained by the log (their values still come from the quote); events
// for PCRs that were not quoted are unauthenticated and dropped.
func checkEventLog(log []byte, quoted map[int][]byte) ([]Event, error) {
	if len(log) == 0 {
		return nil, nil
	}
	var (
		events  []Event
		initial map[int][32]byte
		err     error
	)
	if isSCCLog(log) {
		events, err = decodeLog(log)
	} else {
		events, initial, err = parseTCGLog(log)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEventLogMismatch, err)
	}
	replayed := replay(events, initial)
	for _, p := range slices.Sorted(maps.Keys(replayed)) {
		got, ok := quoted[p]
		if !ok {
			continue
		}
		want := replayed[p]
		if subtle.ConstantTimeCompare(got, want[:]) != 1 {
			return nil, fmt.Errorf("%w: pcr %d is %x, log replays to %x", ErrEventLogMismatch, p, got, want)
		}
	}
	var out []Event
	for _, e := range events {
		if _, ok := quoted[e.PCR]; ok {
			out = append(out, e)
		}
	}
	return out, nil
}
