package tdx

import (
	"context"
	"crypto/subtle"
	"fmt"
	"os"

	"github.com/google/go-tdx-guest/client"
)

// Evidence is what a TD sends a verifier.
type Evidence struct {
	// Quote is the raw TDX v4 quote.
	Quote []byte
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
	return &Evidence{Quote: r.quote}, nil
}
