package snp

import (
	"context"
	"fmt"
	"time"

	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
)

// Options configure Verify. The zero value verifies offline against AMD's
// roots embedded in go-sev-guest at the current time, but an empty Policy
// refuses everything (ErrInvalidPolicy).
type Options struct {
	// TrustedRoots maps a product line ("Milan", "Genoa", "Turin") to the
	// ARK/ASK(ASVK) sets trusted for it. Nil means AMD's published roots
	// embedded in go-sev-guest. Tests pass go-sev-guest's fake roots here.
	TrustedRoots map[string][]*trust.AMDRootCerts
	// Getter, if set, lets the verifier fetch certificates missing from the
	// evidence from AMD's key distribution service. Nil (the default) never
	// touches the network: the evidence must carry the VCEK or VLEK.
	Getter trust.HTTPSGetter
	// Now is the time at which certificates must be valid; zero means now.
	Now time.Time
	// Policy is what the report must satisfy once its signature holds.
	Policy Policy
}

// Verify checks SNP evidence: the report's signature by its VCEK or VLEK,
// that key's certificate chain up to a trusted AMD root, and then the
// policy. It returns the report's claims only when everything holds; every
// refusal wraps one of the package's sentinel errors.
func Verify(ctx context.Context, ev Evidence, opts Options) (*Claims, error) {
	if ev.TEE != TEE {
		return nil, fmt.Errorf("%w: evidence says %q, verifier is %q", ErrWrongTEE, ev.TEE, TEE)
	}
	if err := opts.Policy.validateSelf(); err != nil {
		return nil, err
	}
	rep, err := ev.ParseReport()
	if err != nil {
		return nil, err
	}
	att := &spb.Attestation{Report: rep, CertificateChain: ev.CertChain.proto()}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	vopts := &verify.Options{
		TrustedRoots:        opts.TrustedRoots,
		Getter:              opts.Getter,
		DisableCertFetching: opts.Getter == nil,
		Now:                 now,
	}
	if err := verify.SnpAttestationContext(ctx, att, vopts); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	if err := opts.Policy.Check(rep); err != nil {
		return nil, err
	}
	if err := validate.SnpAttestation(att, opts.Policy.validateOptions()); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicyViolation, err)
	}
	return ClaimsFromReport(TEE, rep)
}
