package snp

import (
	"context"
	"fmt"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/client"
)

// Attester produces SNP evidence inside a guest. It implements the key
// broker client's Attester interface.
type Attester struct {
	// Provider gets the raw report and certificate table from the
	// firmware. Nil means go-sev-guest's client.GetQuoteProvider: the
	// configfs-tsm report interface (/sys/kernel/config/tsm/report) where
	// the kernel has it, else the /dev/sev-guest ioctl.
	Provider client.QuoteProvider
}

// TEE returns "snp".
func (a *Attester) TEE() string { return TEE }

// Evidence returns the JSON evidence for reportData, as DecodeEvidence reads it.
func (a *Attester) Evidence(ctx context.Context, reportData [64]byte) ([]byte, error) {
	ev, err := a.GetEvidence(ctx, reportData)
	if err != nil {
		return nil, err
	}
	return ev.Marshal()
}

// GetEvidence asks the firmware for a report carrying reportData, with the
// certificate chain the host stored for the guest (an extended report).
// The chain may be empty if the host provided none; then the verifier must
// be given a Getter or refuse.
func (a *Attester) GetEvidence(ctx context.Context, reportData [64]byte) (Evidence, error) {
	if err := ctx.Err(); err != nil {
		return Evidence{}, err
	}
	qp := a.Provider
	if qp == nil {
		var err error
		if qp, err = client.GetQuoteProvider(); err != nil {
			return Evidence{}, fmt.Errorf("open SNP guest device: %w", err)
		}
	}
	raw, err := qp.GetRawQuote(reportData)
	if err != nil {
		return Evidence{}, fmt.Errorf("get SNP report: %w", err)
	}
	att, err := abi.ReportCertsToProto(raw)
	if err != nil {
		return Evidence{}, fmt.Errorf("parse SNP report: %w", err)
	}
	return Evidence{
		TEE:       TEE,
		Report:    raw[:abi.ReportSize],
		CertChain: certChainFromProto(att.GetCertificateChain()),
	}, nil
}

// GetEvidence gets evidence from this machine's SNP firmware; see
// Attester.GetEvidence.
func GetEvidence(ctx context.Context, reportData [64]byte) (Evidence, error) {
	return (&Attester{}).GetEvidence(ctx, reportData)
}
