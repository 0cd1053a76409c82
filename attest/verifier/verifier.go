// Package verifier verifies attestation evidence of every TEE type scc
// knows (snp, tdx, vtpm, sim) and applies a policy document to it,
// returning claims of one shape whatever the TEE. The key broker uses it
// for each attestation, bound to the session; scc attest verify uses it on
// recorded evidence.
//
// Evidence is the JSON object a guest's Attester produces and a key
// broker receives as tee-evidence: snp.Evidence for snp and sim,
// tdx.Evidence, vtpm.Evidence.
package verifier

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-sev-guest/verify/trust"

	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/policy"
	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
	"github.com/sccontainers/scc/attest/tdx"
	"github.com/sccontainers/scc/attest/vtpm"
)

var (
	// ErrUnknownTEE means the TEE type is none of policy.TEEs.
	ErrUnknownTEE = errors.New("unknown TEE type")
	// ErrWrongTEE means the evidence names another TEE type than the one
	// it is verified as (the session's, or scc attest verify --tee).
	ErrWrongTEE = errors.New("evidence is for another TEE type")
)

// Options say what to trust and what to require.
type Options struct {
	// Policy is the policy document to apply: whether the TEE type is
	// allowed, its platform terms and its reference values. Nil checks
	// authenticity only (signatures, certificate chains, consistency)
	// and returns the claims for the caller to judge; even then simulated
	// evidence and vTPM quotes are refused, as nothing names a simulated
	// root or attestation key to trust.
	Policy *policy.Document
	// ReportData is the binding the evidence must carry: for a key
	// broker session attest.ReportDataWithClaims(nonce, tee-pubkey,
	// RuntimeClaims), which a vTPM quote carries as
	// vtpm.QualifyingData. Nil does not check it, for evidence recorded
	// outside a session; Claims.ReportData shows it.
	ReportData *[64]byte
	// RuntimeClaims are the guest's claims that ReportData binds: the
	// images it runs, for snp, tdx and sim guests. A vTPM guest's images
	// come from its event log instead (vtpm.ImagesOf), which its monitor
	// keeps.
	RuntimeClaims *attest.RuntimeClaims
	// Now is when certificates and collateral must be valid; zero means
	// time.Now().
	Now time.Time

	// SNPRoots are the trusted AMD roots per product line; nil means
	// AMD's roots embedded in go-sev-guest.
	SNPRoots map[string][]*trust.AMDRootCerts
	// SNPGetter fetches SNP certificates missing from the evidence; nil
	// keeps verification offline.
	SNPGetter trust.HTTPSGetter

	// TDXRoots anchor the PCK and Intel PCS chains; nil means Intel's
	// SGX Root CA.
	TDXRoots *x509.CertPool
	// TDXCollateral is the Intel PCS collateral that rates a TD
	// platform's TCB level; its revocation lists, when it has them, are
	// checked too. Required unless TDXSkipTCBCheck.
	TDXCollateral *tdx.Collateral
	// TDXSkipTCBCheck verifies TDX quotes without collateral: the PCK
	// chain and the signatures, not the TCB level. The claims say so
	// (tdx.tcb_status "not checked").
	TDXSkipTCBCheck bool
}

// Claims are the facts verified evidence establishes, in one shape for
// every TEE type; the TEE's own claims are in SNP, TDX or VTPM.
type Claims struct {
	TEE string `json:"tee"`
	// Measurement is the launch measurement, hex: MEASUREMENT (snp,
	// sim) or MRTD (tdx); empty for vtpm, whose PCRs are in VTPM.
	Measurement string `json:"measurement,omitempty"`
	// ReportData is what binds the evidence to a session, hex:
	// REPORT_DATA (snp, sim, tdx), the quote's qualifying data (vtpm).
	ReportData string `json:"report_data"`
	// Debug says the host can read the guest's memory.
	Debug bool `json:"debug"`
	// PlatformID identifies the machine or key, hex: CHIP_ID (snp, sim),
	// the PCK certificate's PPID (tdx), the AK digest (vtpm).
	PlatformID string `json:"platform_id,omitempty"`
	// TCB is the platform's TCB level: SNPTCB or TDXTCB.
	TCB any `json:"tcb,omitempty"`
	// Workloads are the policy's workloads whose reference values the
	// evidence matches (with a policy).
	Workloads []string `json:"workloads,omitempty"`
	// Origin is how the guest started (vtpm, when the quote covers the
	// lifecycle PCR of scc's trusted monitor).
	Origin *Origin `json:"origin,omitempty"`
	// Images are the container images the guest pulled, oldest first,
	// and ImagesFrom says where the verifier learnt them: the event log
	// of the image PCR (vtpm), or the runtime claims the evidence binds.
	Images     []attest.Image `json:"images,omitempty"`
	ImagesFrom string         `json:"images_from,omitempty"`

	SNP  *snp.Claims  `json:"snp,omitempty"` // snp and sim
	TDX  *tdx.Claims  `json:"tdx,omitempty"`
	VTPM *vtpm.Claims `json:"vtpm,omitempty"`
}

// Origin is how a guest started: it booted fresh, or it was restored from
// the snapshots listed (hex SHA-256 of each saved state, oldest first);
// and how many tenants it served, cleaned after each, before the current
// one (0: never reused).
type Origin struct {
	Fresh        bool     `json:"fresh"`
	RestoredFrom []string `json:"restored_from,omitempty"`
	Generation   uint64   `json:"generation"`
}

// SNPTCB is an SNP (or sim) REPORTED_TCB by component.
type SNPTCB struct {
	Bootloader uint8 `json:"bootloader"`
	TEE        uint8 `json:"tee"`
	SNP        uint8 `json:"snp"`
	Microcode  uint8 `json:"microcode"`
}

// TDXTCB is a TD platform's TCB level.
type TDXTCB struct {
	TeeTcbSvn string `json:"tee_tcb_svn"`
	PCESVN    uint16 `json:"pce_svn"`
	QESVN     uint16 `json:"qe_svn"`
	// Status is "UpToDate" (the collateral rated it so; anything else
	// is refused) or "not checked".
	Status string `json:"status"`
}

// Verify verifies evidence of type tee as opts say. Errors wrap the
// backend's sentinels (snp.ErrSignature, tdx.ErrVerification, ...),
// sim.ErrSimNotAllowed, policy.ErrTEENotAllowed,
// policy.ErrReferenceMismatch, policy.ErrOriginNotAllowed, ErrUnknownTEE
// or ErrWrongTEE.
func Verify(ctx context.Context, tee string, evidence []byte, opts Options) (*Claims, error) {
	if err := checkTEE(tee, evidence); err != nil {
		return nil, err
	}
	if opts.Policy != nil && tee != sim.TEE {
		// sim.Verify refuses a disallowed simulated root itself, with
		// the error that says why simulated evidence is dangerous.
		if tp, ok := opts.Policy.Attestation[tee]; !ok || !tp.Allow {
			return nil, fmt.Errorf("verify %s evidence: %w: %s", tee, policy.ErrTEENotAllowed, tee)
		}
	}
	var (
		c      *Claims
		values policy.Values
		err    error
	)
	switch tee {
	case snp.TEE, sim.TEE:
		c, values, err = verifySNP(ctx, tee, evidence, opts)
	case tdx.TEE:
		c, values, err = verifyTDX(evidence, opts)
	case vtpm.TEE:
		c, values, err = verifyVTPM(evidence, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("verify %s evidence: %w", tee, err)
	}
	known := images(c, opts)
	if opts.Policy != nil {
		if c.Workloads, err = opts.Policy.Match(tee, values); err != nil {
			return nil, fmt.Errorf("verify %s evidence: %w", tee, err)
		}
		if err := opts.Policy.CheckImages(tee, c.Images, known); err != nil {
			return nil, fmt.Errorf("verify %s evidence: %w", tee, err)
		}
	}
	return c, nil
}

// Where Claims.ImagesFrom says the images come from.
const (
	ImagesFromEventLog      = "vtpm event log"
	ImagesFromRuntimeClaims = "runtime claims bound to the report data"
)

// images fills in the images the verified guest reports and says whether
// the evidence shows them: a vTPM quote must cover the image PCR; other
// evidence shows the runtime claims only when checked against the
// session's report data.
func images(c *Claims, opts Options) bool {
	if c.TEE == vtpm.TEE {
		imgs, err := vtpm.ImagesOf(c.VTPM)
		if err != nil {
			return false
		}
		c.Images, c.ImagesFrom = imgs, ImagesFromEventLog
		return true
	}
	if opts.ReportData == nil {
		return false
	}
	if opts.RuntimeClaims != nil && len(opts.RuntimeClaims.Images) > 0 {
		c.Images, c.ImagesFrom = opts.RuntimeClaims.Images, ImagesFromRuntimeClaims
	}
	return true
}

// checkTEE refuses an unknown TEE type and evidence that names another.
func checkTEE(tee string, evidence []byte) error {
	switch tee {
	case snp.TEE, sim.TEE, tdx.TEE, vtpm.TEE:
	default:
		return fmt.Errorf("%w %q", ErrUnknownTEE, tee)
	}
	var probe struct {
		TEE string `json:"tee"`
	}
	if err := json.Unmarshal(evidence, &probe); err != nil {
		// The backend's decoder says what is wrong in its own terms.
		return nil
	}
	if probe.TEE != tee {
		return fmt.Errorf("verify %s evidence: %w: it says %q", tee, ErrWrongTEE, probe.TEE)
	}
	return nil
}

func now(opts Options) time.Time {
	if opts.Now.IsZero() {
		return time.Now()
	}
	return opts.Now
}
