package tdx

import (
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"

	"github.com/google/go-tdx-guest/verify/trust"
)

// Collateral is Intel PCS's data about the platform that produced a quote,
// as PCS serves it, so that a verifier can check the TCB level without
// network access. A verifier obtains it out of band (for instance from a
// caching service) and refreshes it before NextUpdate.
type Collateral struct {
	// TCBInfo is the body of PCS's TDX TCB info response
	// (/tdx/certification/v4/tcb?fmspc=...) for the quote's FMSPC.
	TCBInfo []byte
	// TCBInfoIssuerChain is the PEM chain (signing certificate, then
	// root) from the TCB-Info-Issuer-Chain response header, URL-decoded.
	TCBInfoIssuerChain []byte
	// QEIdentity is the body of PCS's TDX QE identity response
	// (/tdx/certification/v4/qe/identity).
	QEIdentity []byte
	// QEIdentityIssuerChain is the PEM chain from the
	// SGX-Enclave-Identity-Issuer-Chain header, URL-decoded.
	QEIdentityIssuerChain []byte

	// PCKCRL (DER), its issuer chain (PEM, from the
	// SGX-PCK-CRL-Issuer-Chain header) and RootCACRL (DER) are needed only
	// when Options.CheckRevocations is set.
	PCKCRL            []byte
	PCKCRLIssuerChain []byte
	RootCACRL         []byte
}

// check reports the first missing piece of collateral, so that the
// caller gets ErrNoCollateral rather than a failed fetch.
func (c *Collateral) check(revocations bool) error {
	type part struct {
		name string
		v    []byte
	}
	need := []part{
		{"TCBInfo", c.TCBInfo},
		{"TCBInfoIssuerChain", c.TCBInfoIssuerChain},
		{"QEIdentity", c.QEIdentity},
		{"QEIdentityIssuerChain", c.QEIdentityIssuerChain},
	}
	if revocations {
		need = append(need,
			part{"PCKCRL", c.PCKCRL},
			part{"PCKCRLIssuerChain", c.PCKCRLIssuerChain},
			part{"RootCACRL", c.RootCACRL})
	}
	for _, n := range need {
		if len(n.v) == 0 {
			return fmt.Errorf("%w: Collateral.%s is empty", ErrNoCollateral, n.name)
		}
	}
	return nil
}

// Response header names that go-tdx-guest reads the issuer chains from.
const (
	hdrTCBInfoChain    = "Tcb-Info-Issuer-Chain"
	hdrQEIdentityChain = "Sgx-Enclave-Identity-Issuer-Chain"
	hdrPCKCRLChain     = "Sgx-Pck-Crl-Issuer-Chain"
)

// collateralGetter serves a Collateral to go-tdx-guest's verifier in place
// of Intel PCS, so verification never touches the network.
type collateralGetter struct {
	c *Collateral
}

var _ trust.HTTPSGetter = collateralGetter{}

func (g collateralGetter) Get(rawURL string) (map[string][]string, []byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("collateral for %q: %w", rawURL, err)
	}
	// The verifier URL-decodes issuer chains, as PCS sends them encoded.
	chain := func(name string, pemChain []byte) map[string][]string {
		return map[string][]string{name: {url.QueryEscape(string(pemChain))}}
	}
	var (
		hdr  map[string][]string
		body []byte
	)
	switch p := u.Path; {
	case strings.HasSuffix(p, "/tcb"):
		hdr, body = chain(hdrTCBInfoChain, g.c.TCBInfoIssuerChain), g.c.TCBInfo
	case strings.HasSuffix(p, "/qe/identity"):
		hdr, body = chain(hdrQEIdentityChain, g.c.QEIdentityIssuerChain), g.c.QEIdentity
	case strings.HasSuffix(p, "/pckcrl"):
		hdr, body = chain(hdrPCKCRLChain, g.c.PCKCRLIssuerChain), g.c.PCKCRL
	case strings.HasSuffix(p, ".der") || strings.HasSuffix(p, ".crl"):
		// The root CA CRL, at the root certificate's distribution point.
		body = g.c.RootCACRL
	}
	if len(body) == 0 {
		return nil, nil, fmt.Errorf("%w: nothing supplied for %s", ErrNoCollateral, rawURL)
	}
	return hdr, body, nil
}

// intelRootPEM is Intel's SGX Root CA certificate, which anchors every
// PCK certificate chain and PCS signing chain.
//
//go:embed intel_sgx_root_ca.pem
var intelRootPEM []byte

// intelRootSHA256 is the published SHA-256 fingerprint of the Intel SGX
// Root CA certificate; it guards the embedded copy.
const intelRootSHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

// IntelRoots returns a pool holding Intel's SGX Root CA, the default
// Options.TrustedRoots.
func IntelRoots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(intelRoot)
	return pool
}

var intelRoot = mustParseIntelRoot()

func mustParseIntelRoot() *x509.Certificate {
	block, _ := pem.Decode(intelRootPEM)
	if block == nil {
		panic("tdx: embedded Intel root is not PEM")
	}
	if sum := sha256.Sum256(block.Bytes); hex.EncodeToString(sum[:]) != intelRootSHA256 {
		panic("tdx: embedded Intel root has the wrong fingerprint")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		panic(fmt.Sprintf("tdx: embedded Intel root: %v", err))
	}
	return cert
}
