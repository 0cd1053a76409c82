package tdx

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-tdx-guest/abi"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/verify"
	"github.com/google/go-tdx-guest/verify/trust"
)

// Errors returned by this package, wrapped with detail; match with
// errors.Is. Measurement and REPORT_DATA mismatches are *MismatchError.
var (
	// ErrNoDevice means the guest has neither configfs-tsm TDX support
	// nor /dev/tdx_guest: it is not a TD.
	ErrNoDevice = errors.New("tdx: no TDX guest device")
	// ErrMalformed means the quote could not be decoded as a TDX v4
	// quote.
	ErrMalformed = errors.New("tdx: malformed quote")
	// ErrWrongTEE means the evidence names another TEE than "tdx".
	ErrWrongTEE = errors.New("tdx: evidence is for another TEE")
	// ErrNoCollateral means the TCB level cannot be checked because no
	// collateral (or not all of it) was supplied.
	ErrNoCollateral = errors.New("tdx: collateral missing")
	// ErrVerification means the quote is not authentic or its platform
	// is not trustworthy: the PCK chain, QE report, signature, collateral
	// or TCB level check failed.
	ErrVerification = errors.New("tdx: quote verification failed")
	// ErrDebug means the TD has the DEBUG attribute: its memory and
	// state are open to the host, so its measurements promise nothing.
	ErrDebug = errors.New("tdx: TD is debuggable")
	// ErrMeasurementMismatch means a measurement register does not hold
	// the expected value.
	ErrMeasurementMismatch = errors.New("tdx: measurement mismatch")
	// ErrReportDataMismatch means REPORT_DATA is not the expected value.
	ErrReportDataMismatch = errors.New("tdx: REPORT_DATA mismatch")
	// ErrPolicy means another policy check failed (XFAM or TD attribute
	// fixed bits, minimum SVNs, MRSEAM).
	ErrPolicy = errors.New("tdx: policy not met")
)

// MismatchError reports which field did not hold the expected value.
type MismatchError struct {
	Field     string // "MRTD", "RTMR2", "REPORTDATA", ...
	Got, Want []byte
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%v: %s is %x, want %x", e.Unwrap(), e.Field, e.Got, e.Want)
}

// Unwrap makes errors.Is match ErrReportDataMismatch for REPORTDATA and
// ErrMeasurementMismatch for the rest.
func (e *MismatchError) Unwrap() error {
	if e.Field == "REPORTDATA" {
		return ErrReportDataMismatch
	}
	return ErrMeasurementMismatch
}

// Options say how to verify a quote and what it must contain.
type Options struct {
	// TrustedRoots anchor the PCK and PCS signing chains; nil means
	// Intel's SGX Root CA (IntelRoots).
	TrustedRoots *x509.CertPool
	// Collateral lets the TCB level be checked offline.
	Collateral *Collateral
	// Getter fetches collateral when Collateral is nil. Leave it nil for
	// offline verification; trust.DefaultHTTPSGetter() fetches from
	// Intel PCS over the network.
	Getter trust.HTTPSGetter
	// CheckRevocations checks the PCK chain and PCS signing certificates
	// against Intel's CRLs (Collateral.PCKCRL, RootCACRL).
	CheckRevocations bool
	// SkipTCBCheck verifies only the PCK chain and the signatures, not
	// the platform's TCB level, so that no collateral is needed. A quote
	// from a platform with known vulnerabilities then passes: for tests
	// and for callers that judge the TCB elsewhere. Claims.TCBChecked
	// records it.
	SkipTCBCheck bool
	// Now is the time for certificate and collateral validity; zero
	// means time.Now().
	Now time.Time
	// Policy is what the TD's report must contain.
	Policy Policy
}

// Policy lists expected TD report values. A nil field is not checked.
type Policy struct {
	MRTD          []byte    // 48 bytes: the initial TD memory and configuration
	RTMRs         [4][]byte // 48 bytes each: the runtime measurement registers
	MRConfigID    []byte    // 48 bytes
	MROwner       []byte    // 48 bytes
	MROwnerConfig []byte    // 48 bytes
	ReportData    []byte    // 64 bytes: binds the quote to the verifier's nonce or key
	MRSeam        []byte    // 48 bytes: the TDX module's measurement

	// MinimumTeeTcbSvn is the component-wise minimum TEE_TCB_SVN (16
	// bytes); MinimumQESVN and MinimumPCESVN bound the quoting enclave.
	MinimumTeeTcbSvn []byte
	MinimumQESVN     uint16
	MinimumPCESVN    uint16

	// AllowDebug accepts a TD with the DEBUG attribute. Never set it
	// outside development.
	AllowDebug bool
}

// Claims is what a verified quote establishes about the TD and the
// platform it runs on. It encodes to JSON with hex byte fields
// (MarshalJSON).
type Claims struct {
	MRTD          []byte
	RTMRs         [4][]byte
	MRConfigID    []byte
	MROwner       []byte
	MROwnerConfig []byte
	MRSeam        []byte
	ReportData    [64]byte
	TDAttributes  []byte
	XFAM          []byte
	TeeTcbSvn     []byte
	Debug         bool
	// QESVN is the quoting enclave's SVN, from the quote header.
	QESVN uint16
	// PPID, FMSPC, PCESVN and CPUSVN come from the verified PCK
	// certificate: the platform's identity and TCB level. PPID is empty
	// when the certificate does not carry it.
	PPID   string
	FMSPC  string
	PCESVN uint16
	CPUSVN []byte
	// TCBChecked is false when Options.SkipTCBCheck was set; when true,
	// the collateral rated the platform's TCB level UpToDate.
	TCBChecked bool
}

// Verify checks quote (raw TDX v4 quote bytes) as the package
// documentation describes and returns what it establishes.
func Verify(quote []byte, opts Options) (*Claims, error) {
	q, err := parseQuote(quote)
	if err != nil {
		return nil, fmt.Errorf("verify tdx quote: %w", err)
	}
	if err := verifyQuote(q, opts); err != nil {
		return nil, fmt.Errorf("verify tdx quote: %w", err)
	}
	if err := checkPolicy(q, opts.Policy); err != nil {
		return nil, fmt.Errorf("verify tdx quote: %w", err)
	}
	c := claimsOf(q)
	if err := c.addPCK(q); err != nil {
		return nil, fmt.Errorf("verify tdx quote: %w", err)
	}
	c.TCBChecked = !opts.SkipTCBCheck
	return c, nil
}

// parseQuote decodes a v4 quote and checks its structure.
func parseQuote(raw []byte) (q *pb.QuoteV4, err error) {
	// go-tdx-guest's decoder trusts the length fields inside the quote:
	// a QE authentication data size larger than what follows makes it
	// slice out of range. Hostile input must fail, not crash a verifier.
	defer func() {
		if r := recover(); r != nil {
			q, err = nil, fmt.Errorf("%w: %v", ErrMalformed, r)
		}
	}()
	v, err := abi.QuoteToProto(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	q, ok := v.(*pb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("%w: quote format %T", ErrMalformed, v)
	}
	if err := abi.CheckQuoteV4(q); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if q.GetHeader().GetTeeType() != abi.TeeTDX {
		return nil, fmt.Errorf("%w: TEE type 0x%x is not TDX", ErrMalformed, q.GetHeader().GetTeeType())
	}
	return q, nil
}

func verifyQuote(q *pb.QuoteV4, opts Options) error {
	vo := &verify.Options{
		TrustedRoots:     opts.TrustedRoots,
		Now:              opts.Now,
		CheckRevocations: opts.CheckRevocations,
	}
	// The library falls back to its own copy of the root and announces
	// that on stdout; always pass ours instead.
	if vo.TrustedRoots == nil {
		vo.TrustedRoots = IntelRoots()
	}
	if vo.Now.IsZero() {
		vo.Now = time.Now()
	}
	if opts.SkipTCBCheck && (opts.Collateral != nil || opts.Getter != nil) {
		return errors.New("SkipTCBCheck contradicts supplied collateral")
	}
	switch {
	case opts.Collateral != nil:
		if err := opts.Collateral.check(opts.CheckRevocations); err != nil {
			return err
		}
		vo.GetCollateral, vo.Getter = true, collateralGetter{opts.Collateral}
	case opts.Getter != nil:
		vo.GetCollateral, vo.Getter = true, opts.Getter
	case opts.SkipTCBCheck:
		if opts.CheckRevocations {
			return fmt.Errorf("%w: revocation checks need the CRLs in Collateral", ErrNoCollateral)
		}
	default:
		return fmt.Errorf("%w: set Options.Collateral, or SkipTCBCheck to verify without it", ErrNoCollateral)
	}
	if err := verify.TdxQuote(q, vo); err != nil {
		return fmt.Errorf("%w: %w", ErrVerification, err)
	}
	return nil
}

func claimsOf(q *pb.QuoteV4) *Claims {
	b := q.GetTdQuoteBody()
	c := &Claims{
		MRTD:          bytes.Clone(b.GetMrTd()),
		MRConfigID:    bytes.Clone(b.GetMrConfigId()),
		MROwner:       bytes.Clone(b.GetMrOwner()),
		MROwnerConfig: bytes.Clone(b.GetMrOwnerConfig()),
		MRSeam:        bytes.Clone(b.GetMrSeam()),
		TDAttributes:  bytes.Clone(b.GetTdAttributes()),
		XFAM:          bytes.Clone(b.GetXfam()),
		TeeTcbSvn:     bytes.Clone(b.GetTeeTcbSvn()),
		Debug:         isDebug(b.GetTdAttributes()),
	}
	copy(c.ReportData[:], b.GetReportData())
	if svn := q.GetHeader().GetQeSvn(); len(svn) == 2 {
		c.QESVN = binary.LittleEndian.Uint16(svn)
	}
	for i, r := range b.GetRtmrs() {
		if i < len(c.RTMRs) {
			c.RTMRs[i] = bytes.Clone(r)
		}
	}
	return c
}
