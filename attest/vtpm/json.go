package vtpm

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/google/go-tpm/tpm2"
)

// Bounds on decoded evidence; the TPM structures are a few hundred bytes.
const (
	maxStructSize = 4 << 10
	// MaxEventLogSize is the largest event log accepted in evidence.
	MaxEventLogSize = 1 << 20
)

// evidenceJSON is the wire form of Evidence.
type evidenceJSON struct {
	TEE       string            `json:"tee"`
	Quote     []byte            `json:"quote"`
	Signature []byte            `json:"signature"`
	PCRs      map[string]string `json:"pcrs"`
	AKPublic  []byte            `json:"ak_public"`
	EventLog  []byte            `json:"event_log,omitempty"`
}

// MarshalJSON encodes evidence as the JSON object carried as tee-evidence
// in a key broker attestation request:
//
//	{"tee": "vtpm",
//	 "quote": "<base64 TPMS_ATTEST>", "signature": "<base64 TPMT_SIGNATURE>",
//	 "pcrs": {"<index>": "<hex SHA-256 value>", ...},
//	 "ak_public": "<base64 TPMT_PUBLIC>", "event_log": "<base64>"}
//
// (standard base64 alphabet; event_log omitted when empty).
func (e *Evidence) MarshalJSON() ([]byte, error) {
	pcrs := make(map[string]string, len(e.PCRs))
	for p, v := range e.PCRs {
		pcrs[strconv.Itoa(p)] = hex.EncodeToString(v)
	}
	return json.Marshal(evidenceJSON{
		TEE:       TEE,
		Quote:     e.Quote,
		Signature: e.Signature,
		PCRs:      pcrs,
		AKPublic:  e.AKPublic,
		EventLog:  e.EventLog,
	})
}

// UnmarshalJSON decodes evidence as DecodeEvidence does.
func (e *Evidence) UnmarshalJSON(data []byte) error {
	ev, err := DecodeEvidence(data)
	if err != nil {
		return err
	}
	*e = *ev
	return nil
}

// DecodeEvidence parses evidence JSON (MarshalJSON's format). It takes
// untrusted input: unknown members, another TEE, oversized fields, PCR
// indices out of range or not in canonical decimal, and PCR values that
// are not 32 bytes of hex are refused with ErrMalformed. The TPM
// structures are decoded later, by Verify.
func DecodeEvidence(data []byte) (*Evidence, error) {
	var w evidenceJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after evidence", ErrMalformed)
	}
	if w.TEE != TEE {
		return nil, fmt.Errorf("%w: evidence says tee %q, want %q", ErrMalformed, w.TEE, TEE)
	}
	for name, f := range map[string][]byte{"quote": w.Quote, "signature": w.Signature, "ak_public": w.AKPublic} {
		if len(f) == 0 || len(f) > maxStructSize {
			return nil, fmt.Errorf("%w: %s is %d bytes", ErrMalformed, name, len(f))
		}
	}
	if len(w.EventLog) > MaxEventLogSize {
		return nil, fmt.Errorf("%w: event log is %d bytes, limit %d", ErrMalformed, len(w.EventLog), MaxEventLogSize)
	}
	if len(w.PCRs) == 0 {
		return nil, fmt.Errorf("%w: no PCR values", ErrMalformed)
	}
	ev := &Evidence{
		Quote:     w.Quote,
		Signature: w.Signature,
		AKPublic:  w.AKPublic,
		EventLog:  w.EventLog,
		PCRs:      make(map[int][]byte, len(w.PCRs)),
	}
	for _, k := range slices.Sorted(maps.Keys(w.PCRs)) {
		p, err := strconv.Atoi(k)
		if err != nil || p < 0 || p >= NumPCRs || strconv.Itoa(p) != k {
			return nil, fmt.Errorf("%w: pcr index %q", ErrMalformed, k)
		}
		v, err := hex.DecodeString(w.PCRs[k])
		if err != nil || len(v) != 32 {
			return nil, fmt.Errorf("%w: pcr %d value is not 32 bytes of hex", ErrMalformed, p)
		}
		ev.PCRs[p] = v
	}
	return ev, nil
}

// MarshalJSON encodes claims with hex digests and snake_case names, as
// scc attest verify prints them and the key broker puts them in tokens.
func (c *Claims) MarshalJSON() ([]byte, error) {
	type event struct {
		PCR    int       `json:"pcr"`
		Type   EventType `json:"type"`
		Digest string    `json:"digest"`
		Data   []byte    `json:"data,omitempty"`
	}
	pcrs := make(map[string]string, len(c.PCRs))
	for p, v := range c.PCRs {
		pcrs[strconv.Itoa(p)] = hex.EncodeToString(v)
	}
	events := make([]event, 0, len(c.Events))
	for _, e := range c.Events {
		events = append(events, event{PCR: e.PCR, Type: e.Type, Digest: hex.EncodeToString(e.Digest[:]), Data: e.Data})
	}
	return json.Marshal(struct {
		AKDigest     string            `json:"ak_digest"`
		Nonce        string            `json:"nonce"`
		PCRs         map[string]string `json:"pcrs"`
		Events       []event           `json:"events,omitempty"`
		Clock        uint64            `json:"clock"`
		ResetCount   uint32            `json:"reset_count"`
		RestartCount uint32            `json:"restart_count"`
	}{hex.EncodeToString(c.AKDigest[:]), hex.EncodeToString(c.Nonce), pcrs, events, c.Clock, c.ResetCount, c.RestartCount})
}

// QuoteNonce returns the qualifying data the quote says it carries,
// without verifying anything: for showing recorded evidence, whose nonce
// no session fixes, before Verify checks it.
func (e *Evidence) QuoteNonce() ([]byte, error) {
	attest, err := decodeCanonical[tpm2.TPMSAttest](e.Quote)
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	return bytes.Clone(attest.ExtraData.Buffer), nil
}
