package tdx

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	tdxtesting "github.com/google/go-tdx-guest/testing"
)

// sampleBody is the sample quote's TD report, decoded independently of
// Verify's claims.
func sampleBody(t *testing.T) *pb.TDQuoteBody {
	t.Helper()
	q, err := abi.QuoteToProto(sampleQuote())
	if err != nil {
		t.Fatal(err)
	}
	return q.(*pb.QuoteV4).GetTdQuoteBody()
}

func TestIntelRootAnchorsSampleChain(t *testing.T) {
	// The PCK chain inside a real quote ends in the embedded root.
	q, err := abi.QuoteToProto(sampleQuote())
	if err != nil {
		t.Fatal(err)
	}
	chain := q.(*pb.QuoteV4).GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	var last *pem.Block
	for rest := chain; ; {
		b, r := pem.Decode(rest)
		if b == nil {
			break
		}
		last, rest = b, r
	}
	if last == nil || !bytes.Equal(last.Bytes, intelRoot.Raw) {
		t.Fatal("the sample quote's PCK chain does not end in the embedded Intel root")
	}
}

func TestVerify(t *testing.T) {
	pcs := newTestPCS(t)
	good := pcs.collateral(t)
	tampered := pcs.collateral(t)
	tampered.TCBInfo = bytes.Replace(tampered.TCBInfo, []byte(`"pcesvn":11`), []byte(`"pcesvn":10`), 1)
	if bytes.Equal(tampered.TCBInfo, good.TCBInfo) {
		t.Fatal("tampering did not change the TCB info")
	}
	noTCBInfo := pcs.collateral(t)
	noTCBInfo.TCBInfo = nil
	otherRoot := x509.NewCertPool()
	otherRoot.AddCert(pcs.root)
	mrtdFlipped := sampleQuote()
	// The TD report starts after the 48-byte header; MRTD is at 136 in it.
	mrtdFlipped[48+136] ^= 1

	for _, tc := range []struct {
		name    string
		quote   []byte
		opts    Options
		want    error
		checked bool
	}{
		{name: "signatures and chain only", opts: Options{SkipTCBCheck: true, Now: sampleNow}},
		{name: "up-to-date TCB with offline collateral", opts: Options{TrustedRoots: pcs.rootsPool, Collateral: good, Now: sampleNow}, checked: true},
		{name: "Intel's collateral: TCB level not reached", opts: Options{Collateral: intelCollateral(t), Now: sampleNow}, want: ErrVerification},
		{name: "tampered TCB info", opts: Options{TrustedRoots: pcs.rootsPool, Collateral: tampered, Now: sampleNow}, want: ErrVerification},
		{name: "TCB signer not trusted", opts: Options{Collateral: good, Now: sampleNow}, want: ErrVerification},
		{name: "collateral expired", opts: Options{TrustedRoots: pcs.rootsPool, Collateral: good, Now: time.Date(2023, time.August, 1, 0, 0, 0, 0, time.UTC)}, want: ErrVerification},
		{name: "before the PCK certificate", opts: Options{SkipTCBCheck: true, Now: time.Date(2015, time.January, 1, 0, 0, 0, 0, time.UTC)}, want: ErrVerification},
		{name: "PCK chain not under trusted roots", opts: Options{TrustedRoots: otherRoot, SkipTCBCheck: true, Now: sampleNow}, want: ErrVerification},
		{name: "tampered TD report", quote: mrtdFlipped, opts: Options{SkipTCBCheck: true, Now: sampleNow}, want: ErrVerification},
		{name: "no collateral", opts: Options{Now: sampleNow}, want: ErrNoCollateral},
		{name: "collateral without TCB info", opts: Options{TrustedRoots: pcs.rootsPool, Collateral: noTCBInfo, Now: sampleNow}, want: ErrNoCollateral},
		{name: "revocation checks without CRLs", opts: Options{TrustedRoots: pcs.rootsPool, Collateral: good, CheckRevocations: true, Now: sampleNow}, want: ErrNoCollateral},
		{name: "truncated quote", quote: sampleQuote()[:600], opts: Options{SkipTCBCheck: true, Now: sampleNow}, want: ErrMalformed},
		{name: "not a quote", quote: []byte("hello"), opts: Options{SkipTCBCheck: true, Now: sampleNow}, want: ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			quote := tc.quote
			if quote == nil {
				quote = sampleQuote()
			}
			claims, err := Verify(quote, tc.opts)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("Verify = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			body := sampleBody(t)
			if !bytes.Equal(claims.MRTD, body.GetMrTd()) || !bytes.Equal(claims.ReportData[:], body.GetReportData()) ||
				!bytes.Equal(claims.RTMRs[2], body.GetRtmrs()[2]) || claims.Debug {
				t.Errorf("claims do not describe the sample TD: %+v", claims)
			}
			if claims.TCBChecked != tc.checked {
				t.Errorf("TCBChecked = %v, want %v", claims.TCBChecked, tc.checked)
			}
		})
	}
}

// countingGetter records which URLs the verifier asked for.
type countingGetter struct {
	urls []string
	next *tdxtesting.Getter
}

func (g *countingGetter) Get(url string) (map[string][]string, []byte, error) {
	g.urls = append(g.urls, url)
	return g.next.Get(url)
}

func TestVerifyUsesGetter(t *testing.T) {
	g := &countingGetter{next: tdxtesting.TestGetter}
	_, err := Verify(sampleQuote(), Options{Getter: g, Now: sampleNow})
	if !errors.Is(err, ErrVerification) {
		t.Fatalf("Verify = %v, want ErrVerification (sample TCB level)", err)
	}
	joined := strings.Join(g.urls, " ")
	if !strings.Contains(joined, "/tcb?fmspc=") || !strings.Contains(joined, "/qe/identity") {
		t.Fatalf("getter was asked for %q, want TCB info and QE identity", g.urls)
	}
	if _, err := Verify(sampleQuote(), Options{Getter: g, SkipTCBCheck: true, Now: sampleNow}); err == nil {
		t.Fatal("SkipTCBCheck with a Getter was accepted")
	}
}

func TestCollateralGetter(t *testing.T) {
	c := &Collateral{TCBInfo: []byte("tcb"), TCBInfoIssuerChain: []byte("a+b/c\n"), QEIdentity: []byte("qe")}
	g := collateralGetter{c}
	hdr, body, err := g.Get("https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806f000000")
	if err != nil || string(body) != "tcb" {
		t.Fatalf("tcb: %q, %v", body, err)
	}
	// The chain is handed over URL-encoded, as PCS sends it: '+' must
	// survive the verifier's decoding.
	if got := hdr[hdrTCBInfoChain][0]; got != "a%2Bb%2Fc%0A" {
		t.Errorf("issuer chain header = %q", got)
	}
	if _, body, _ := g.Get("https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity"); string(body) != "qe" {
		t.Errorf("qe identity body = %q", body)
	}
	const (
		pckCRLURL  = "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der"
		rootCRLURL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
	)
	for _, u := range []string{pckCRLURL, rootCRLURL, "https://example.com/other"} {
		if _, _, err := g.Get(u); !errors.Is(err, ErrNoCollateral) {
			t.Errorf("Get(%s) = %v, want ErrNoCollateral", u, err)
		}
	}

	c.PCKCRL, c.PCKCRLIssuerChain, c.RootCACRL = []byte("pck crl"), []byte("chain"), []byte("root crl")
	if hdr, body, err := g.Get(pckCRLURL); err != nil || string(body) != "pck crl" || hdr[hdrPCKCRLChain][0] != "chain" {
		t.Errorf("pck crl: %q %q %v", hdr, body, err)
	}
	if _, body, err := g.Get(rootCRLURL); err != nil || string(body) != "root crl" {
		t.Errorf("root crl: %q %v", body, err)
	}
}

func TestPolicy(t *testing.T) {
	body := sampleBody(t)
	rtmrs := body.GetRtmrs()
	flip := func(b []byte) []byte { c := bytes.Clone(b); c[len(c)-1] ^= 1; return c }
	full := Policy{
		MRTD:          body.GetMrTd(),
		RTMRs:         [4][]byte{rtmrs[0], rtmrs[1], rtmrs[2], rtmrs[3]},
		MRConfigID:    body.GetMrConfigId(),
		MROwner:       body.GetMrOwner(),
		MROwnerConfig: body.GetMrOwnerConfig(),
		ReportData:    body.GetReportData(),
		MRSeam:        body.GetMrSeam(),
	}
	with := func(f func(p *Policy)) Policy { p := full; f(&p); return p }

	for _, tc := range []struct {
		name      string
		policy    Policy
		want      error
		wantField string
	}{
		{name: "all fields match", policy: full},
		{name: "empty policy", policy: Policy{}},
		{name: "wrong MRTD", policy: with(func(p *Policy) { p.MRTD = flip(p.MRTD) }), want: ErrMeasurementMismatch, wantField: "MRTD"},
		{name: "wrong RTMR0", policy: with(func(p *Policy) { p.RTMRs[0] = flip(p.RTMRs[0]) }), want: ErrMeasurementMismatch, wantField: "RTMR0"},
		{name: "wrong RTMR3", policy: with(func(p *Policy) { p.RTMRs[3] = flip(p.RTMRs[3]) }), want: ErrMeasurementMismatch, wantField: "RTMR3"},
		{name: "wrong MRCONFIGID", policy: with(func(p *Policy) { p.MRConfigID = flip(p.MRConfigID) }), want: ErrMeasurementMismatch, wantField: "MRCONFIGID"},
		{name: "wrong MROWNER", policy: with(func(p *Policy) { p.MROwner = flip(p.MROwner) }), want: ErrMeasurementMismatch, wantField: "MROWNER"},
		{name: "wrong MROWNERCONFIG", policy: with(func(p *Policy) { p.MROwnerConfig = flip(p.MROwnerConfig) }), want: ErrMeasurementMismatch, wantField: "MROWNERCONFIG"},
		{name: "wrong REPORTDATA", policy: with(func(p *Policy) { p.ReportData = flip(p.ReportData) }), want: ErrReportDataMismatch, wantField: "REPORTDATA"},
		{name: "REPORTDATA of wrong size", policy: with(func(p *Policy) { p.ReportData = p.ReportData[:32] }), want: ErrPolicy},
		{name: "wrong MRSEAM", policy: with(func(p *Policy) { p.MRSeam = flip(p.MRSeam) }), want: ErrPolicy},
		{name: "TEE TCB SVN too low", policy: with(func(p *Policy) {
			p.MinimumTeeTcbSvn = bytes.Repeat([]byte{0xff}, 16)
		}), want: ErrPolicy},
		{name: "QE SVN too low", policy: with(func(p *Policy) { p.MinimumQESVN = 0xffff }), want: ErrPolicy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(sampleQuote(), Options{SkipTCBCheck: true, Now: sampleNow, Policy: tc.policy})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			var m *MismatchError
			if tc.wantField != "" && (!errors.As(err, &m) || m.Field != tc.wantField) {
				t.Fatalf("Verify = %v, want a MismatchError on %s", err, tc.wantField)
			}
		})
	}
}

func TestDebugTD(t *testing.T) {
	// A debuggable TD cannot be faked by flipping the bit in a real quote:
	// the signature covers it.
	raw := sampleQuote()
	const tdAttributesOffset = 48 + 120 // header, then TEE_TCB_SVN, MRSEAM, MRSIGNERSEAM, SEAMATTRIBUTES
	if !bytes.Equal(raw[tdAttributesOffset:tdAttributesOffset+8], sampleBody(t).GetTdAttributes()) {
		t.Fatal("TD_ATTRIBUTES offset is wrong")
	}
	raw[tdAttributesOffset] |= tdAttributeDebug
	if _, err := Verify(raw, Options{SkipTCBCheck: true, Now: sampleNow, Policy: Policy{AllowDebug: true}}); !errors.Is(err, ErrVerification) {
		t.Fatalf("debug bit flipped in a signed quote: %v, want ErrVerification", err)
	}

	// The policy itself, on the decoded report of a debuggable TD.
	q, err := parseQuote(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkPolicy(q, Policy{}); !errors.Is(err, ErrDebug) {
		t.Fatalf("checkPolicy(debug TD) = %v, want ErrDebug", err)
	}
	if err := checkPolicy(q, Policy{AllowDebug: true}); err != nil {
		t.Fatalf("checkPolicy(debug TD, AllowDebug) = %v", err)
	}
	if !claimsOf(q).Debug {
		t.Error("claims do not report the debug attribute")
	}
}
