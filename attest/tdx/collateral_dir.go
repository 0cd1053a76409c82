package tdx

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Files of a collateral directory (LoadCollateral). The names say which
// PCS response each holds; issuer chains are the PEM of the response
// header, URL-decoded.
const (
	CollateralTCBInfo           = "tcb_info.json"                // GET /tdx/certification/v4/tcb?fmspc=...
	CollateralTCBInfoChain      = "tcb_info_issuer_chain.pem"    // its TCB-Info-Issuer-Chain header
	CollateralQEIdentity        = "qe_identity.json"             // GET /tdx/certification/v4/qe/identity
	CollateralQEIdentityChain   = "qe_identity_issuer_chain.pem" // its SGX-Enclave-Identity-Issuer-Chain header
	CollateralPCKCRL            = "pck_crl.der"                  // GET /sgx/certification/v4/pckcrl?ca=...&encoding=der (optional)
	CollateralPCKCRLIssuerChain = "pck_crl_issuer_chain.pem"     // its SGX-PCK-CRL-Issuer-Chain header (optional)
	CollateralRootCACRL         = "root_ca_crl.der"              // Intel SGX Root CA CRL (optional)
	maxCollateralFile           = 1 << 20
)

// LoadCollateral reads collateral from a directory holding the files
// named by the Collateral* constants. The TCB info and QE identity (with
// their issuer chains) are required; the three revocation files are
// optional but go together: when present, Revocations reports true and
// the verifier should set Options.CheckRevocations.
func LoadCollateral(dir string) (*Collateral, error) {
	read := func(name string, required bool) ([]byte, error) {
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) && !required {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("tdx collateral: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxCollateralFile+1))
		if err != nil {
			return nil, fmt.Errorf("tdx collateral: read %s: %w", name, err)
		}
		if len(b) > maxCollateralFile {
			return nil, fmt.Errorf("tdx collateral: %s is larger than %d bytes", name, maxCollateralFile)
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("%w: %s is empty", ErrNoCollateral, name)
		}
		return b, nil
	}
	c := &Collateral{}
	for _, f := range []struct {
		name     string
		required bool
		dst      *[]byte
	}{
		{CollateralTCBInfo, true, &c.TCBInfo},
		{CollateralTCBInfoChain, true, &c.TCBInfoIssuerChain},
		{CollateralQEIdentity, true, &c.QEIdentity},
		{CollateralQEIdentityChain, true, &c.QEIdentityIssuerChain},
		{CollateralPCKCRL, false, &c.PCKCRL},
		{CollateralPCKCRLIssuerChain, false, &c.PCKCRLIssuerChain},
		{CollateralRootCACRL, false, &c.RootCACRL},
	} {
		b, err := read(f.name, f.required)
		if err != nil {
			return nil, err
		}
		*f.dst = b
	}
	n := 0
	for _, b := range [][]byte{c.PCKCRL, c.PCKCRLIssuerChain, c.RootCACRL} {
		if b != nil {
			n++
		}
	}
	if n != 0 && n != 3 {
		return nil, fmt.Errorf("%w: %s, %s and %s go together", ErrNoCollateral, CollateralPCKCRL, CollateralPCKCRLIssuerChain, CollateralRootCACRL)
	}
	return c, nil
}

// Revocations reports whether the collateral holds the revocation lists
// that Options.CheckRevocations needs.
func (c *Collateral) Revocations() bool {
	return len(c.PCKCRL) > 0 && len(c.PCKCRLIssuerChain) > 0 && len(c.RootCACRL) > 0
}
