package sim

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-sev-guest/verify"

	"github.com/sccontainers/scc/attest/snp"
)

// ErrSimNotAllowed means simulated evidence was presented to a verifier
// whose policy does not explicitly allow this simulated root. Simulated
// evidence has no security; only a deliberate policy entry accepts it.
var ErrSimNotAllowed = errors.New("simulated TEE evidence not allowed by policy (it offers no security; allow its root fingerprint explicitly to accept it)")

// Options configure Verify.
type Options struct {
	// AllowSim lists the simulated roots accepted. Empty refuses all
	// simulated evidence with ErrSimNotAllowed.
	AllowSim []RootFingerprint
	// Now is the time at which certificates must be valid; zero means now.
	Now time.Time
	// Policy is applied to the report as for SNP: reference measurements,
	// REPORT_DATA binding, debug, HOST_DATA, minimum TCB.
	Policy snp.Policy
}

// Verify checks simulated evidence: its root is one the options allow, the
// chain ARK -> ASK -> VCEK holds, the VCEK signed the report, and the report
// satisfies the policy. Errors wrap ErrSimNotAllowed or snp's sentinels.
// The claims say TEE "sim".
func Verify(ctx context.Context, ev snp.Evidence, opts Options) (*snp.Claims, error) {
	if ev.TEE != TEE {
		return nil, fmt.Errorf("%w: evidence says %q, verifier is %q", snp.ErrWrongTEE, ev.TEE, TEE)
	}
	if len(opts.AllowSim) == 0 {
		return nil, ErrSimNotAllowed
	}
	ark, err := x509.ParseCertificate(ev.CertChain.ARK)
	if err != nil {
		return nil, fmt.Errorf("%w: sim ARK: %v", snp.ErrMalformedEvidence, err)
	}
	fp := fingerprint(ark)
	allowed := 0
	for _, a := range opts.AllowSim {
		allowed |= subtle.ConstantTimeCompare(fp[:], a[:])
	}
	if allowed != 1 {
		return nil, fmt.Errorf("%w: root %s is not listed", ErrSimNotAllowed, fp)
	}
	vcek, err := verifyChain(ark, ev.CertChain, opts.Now)
	if err != nil {
		return nil, err
	}
	rep, err := ev.ParseReport()
	if err != nil {
		return nil, err
	}
	if err := verify.SnpReportSignature(ev.Report, vcek); err != nil {
		return nil, fmt.Errorf("%w: %v", snp.ErrSignature, err)
	}
	if err := opts.Policy.Check(rep); err != nil {
		return nil, err
	}
	return snp.ClaimsFromReport(TEE, rep)
}

func verifyChain(ark *x509.Certificate, chain snp.CertChain, now time.Time) (*x509.Certificate, error) {
	if now.IsZero() {
		now = time.Now()
	}
	ask, err := x509.ParseCertificate(chain.ASK)
	if err != nil {
		return nil, fmt.Errorf("%w: sim ASK: %v", snp.ErrMalformedEvidence, err)
	}
	vcek, err := x509.ParseCertificate(chain.VCEK)
	if err != nil {
		return nil, fmt.Errorf("%w: sim VCEK: %v", snp.ErrMalformedEvidence, err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(ark)
	inter.AddCert(ask)
	if _, err := vcek.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("%w: sim VCEK chain: %v", snp.ErrSignature, err)
	}
	return vcek, nil
}
