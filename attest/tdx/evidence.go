package tdx

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"os"

	"github.com/google/go-tdx-guest/client"
)

// TEE is the name of this backend in evidence and in key broker requests.
const TEE = "tdx"

// maxQuoteSize bounds the quote in decoded evidence. A v4 quote with its
// PCK certificate chain is about 5 KiB.
const maxQuoteSize = 64 << 10

// Evidence is what a TD sends a verifier, and the JSON object carried as
// tee-evidence in a key broker attestation request:
//
//	{"tee": "tdx", "quote": "<base64 of the raw v4 quote>"}
//
// (standard base64 alphabet, as encoding/json writes []byte).
type Evidence struct {
	// TEE is "tdx".
	TEE string `json:"tee"`
	// Quote is the raw TDX v4 quote.
	Quote []byte `json:"quote"`
}

// DecodeEvidence parses evidence JSON as Attester.Evidence writes it. It
// takes untrusted input: unknown members, another TEE, an oversized quote
// or one that does not decode as a v4 TDX quote are refused (ErrMalformed,
// ErrWrongTEE). Nothing is verified yet: that is Verify's job.
func DecodeEvidence(data []byte) (*Evidence, error) {
	var ev Evidence
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after evidence", ErrMalformed)
	}
	if ev.TEE != TEE {
		return nil, fmt.Errorf("%w: evidence says %q, want %q", ErrWrongTEE, ev.TEE, TEE)
	}
	if len(ev.Quote) > maxQuoteSize {
		return nil, fmt.Errorf("%w: quote is %d bytes, limit %d", ErrMalformed, len(ev.Quote), maxQuoteSize)
	}
	if _, err := parseQuote(ev.Quote); err != nil {
		return nil, err
	}
	return &ev, nil
}

// Marshal encodes the evidence as JSON, the inverse of DecodeEvidence.
func (e *Evidence) Marshal() ([]byte, error) {
	out := *e
	out.TEE = TEE
	return json.Marshal(out)
}

// Attester produces TDX evidence inside a TD. It implements the key broker
// client's Attester interface.
type Attester struct {
	// Provider produces the quotes; nil means this TD's quoting service
	// (configfs-tsm, else /dev/tdx_guest).
	Provider QuoteProvider
}

// TEE returns "tdx".
func (a *Attester) TEE() string { return TEE }

// Evidence returns JSON evidence holding a quote over reportData.
func (a *Attester) Evidence(ctx context.Context, reportData [64]byte) ([]byte, error) {
	qp := a.Provider
	if qp == nil {
		var err error
		if qp, err = defaultProvider(); err != nil {
			return nil, fmt.Errorf("get tdx evidence: %w", err)
		}
	}
	ev, err := GetEvidenceFrom(ctx, qp, reportData)
	if err != nil {
		return nil, err
	}
	return ev.Marshal()
}

// QuoteProvider produces a quote over REPORT_DATA; go-tdx-guest's
// configfs-tsm provider is one.
type QuoteProvider interface {
	GetRawQuote(reportData [64]byte) ([]byte, error)
}

// guestDevice is the TDX guest driver's device node.
const guestDevice = "/dev/tdx_guest"

// GetEvidence asks this TD's quoting service for a quote over reportData,
// through configfs-tsm where the kernel offers it, else /dev/tdx_guest.
// It returns ErrNoDevice outside a TD.
func GetEvidence(ctx context.Context, reportData [64]byte) (*Evidence, error) {
	qp, err := defaultProvider()
	if err != nil {
		return nil, fmt.Errorf("get tdx evidence: %w", err)
	}
	return GetEvidenceFrom(ctx, qp, reportData)
}

func defaultProvider() (QuoteProvider, error) {
	tsm, err := client.GetQuoteProvider()
	if err != nil {
		return nil, err
	}
	if tsm.IsSupported() == nil {
		return tsm, nil
	}
	if _, err := os.Stat(guestDevice); err != nil {
		return nil, fmt.Errorf("%w: no configfs-tsm report support and %v", ErrNoDevice, err)
	}
	return deviceProvider{}, nil
}

// deviceProvider gets quotes through the /dev/tdx_guest ioctls, for
// kernels without configfs-tsm.
type deviceProvider struct{}

func (deviceProvider) GetRawQuote(reportData [64]byte) ([]byte, error) {
	d, err := client.OpenDevice()
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return client.GetRawQuote(d, reportData)
}

// GetEvidenceFrom gets a quote from qp and checks that it is a well-formed
// v4 quote over reportData. Quote generation cannot be interrupted: when
// ctx ends first GetEvidenceFrom returns, and the request finishes in the
// background.
func GetEvidenceFrom(ctx context.Context, qp QuoteProvider, reportData [64]byte) (*Evidence, error) {
	type result struct {
		quote []byte
		err   error
	}
	done := make(chan result, 1)
	go func() {
		q, err := qp.GetRawQuote(reportData)
		done <- result{q, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("get tdx evidence: %w", ctx.Err())
	}
	if r.err != nil {
		return nil, fmt.Errorf("get tdx evidence: %w", r.err)
	}
	q, err := parseQuote(r.quote)
	if err != nil {
		return nil, fmt.Errorf("get tdx evidence: %w", err)
	}
	// A quote over other data would fail verification later; catch a
	// confused quoting path here, where it is still clear what happened.
	if got := q.GetTdQuoteBody().GetReportData(); subtle.ConstantTimeCompare(got, reportData[:]) != 1 {
		return nil, fmt.Errorf("get tdx evidence: %w", &MismatchError{Field: "REPORTDATA", Got: got, Want: reportData[:]})
	}
	return &Evidence{TEE: TEE, Quote: r.quote}, nil
}
