// Package verifycli is `scc attest verify`: it verifies recorded
// attestation evidence offline, with the same code path as the key broker
// (package verifier), and prints the verified claims as JSON.
//
//	scc attest verify --tee snp|tdx|vtpm|sim --evidence FILE [--cert FILE]...
//	    [--collateral DIR] [--at RFC3339] [--policy FILE]
//
// The evidence file is the JSON a guest's Attester produces (the key
// broker's tee-evidence), or for snp and sim a raw 1184-byte attestation
// report, for tdx a raw quote. --cert adds certificates (DER or PEM, one
// or several per file) to an SNP or simulated report's chain: the VCEK or
// VLEK, and optionally the ASK/ASVK and ARK (AMD's own roots are built in
// and are the only ones trusted for snp). --collateral is a directory of
// Intel PCS collateral (tdx.LoadCollateral); without it a TDX quote's
// signatures and PCK chain are verified but not its TCB level. --at fixes
// the time at which certificates and collateral must be valid, for
// evidence recorded in the past. --policy applies a key broker policy
// document (package policy): the TEE type must be allowed, its platform
// terms met, and the reference values matched; the claims then list the
// matched workloads. Without a policy only authenticity is checked, and
// simulated evidence and vTPM quotes are refused (nothing names a
// simulated root or an attestation key to trust).
//
// REPORT_DATA is not checked against anything: recorded evidence has no
// session. The claims show it.
package verifycli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"

	"github.com/sccontainers/scc/attest/policy"
	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
	"github.com/sccontainers/scc/attest/tdx"
	"github.com/sccontainers/scc/attest/verifier"
	"github.com/sccontainers/scc/attest/vtpm"
)

// maxEvidenceFile bounds what is read from --evidence and --cert files.
const maxEvidenceFile = 4 << 20

// ErrUsage means the command line is wrong.
var ErrUsage = errors.New("usage: scc attest verify --tee snp|tdx|vtpm|sim --evidence FILE [--cert FILE]... [--collateral DIR] [--at RFC3339] [--policy FILE]")

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// Run runs `scc attest verify` with the flags in args and writes the
// verified claims to stdout as indented JSON. An error is the one reason
// verification failed (or the command line was wrong); nothing is written
// to stdout then.
func Run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("attest verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		tee, evidencePath, collateralDir, at, policyPath string
		certs                                            stringList
	)
	fs.StringVar(&tee, "tee", "", "TEE type of the evidence: "+strings.Join(policy.TEEs, ", "))
	fs.StringVar(&evidencePath, "evidence", "", "evidence file: JSON, or a raw SNP report or TDX quote")
	fs.Var(&certs, "cert", "certificate file (DER or PEM) for an SNP or simulated report's chain; repeatable")
	fs.StringVar(&collateralDir, "collateral", "", "directory of Intel PCS collateral for a TDX quote")
	fs.StringVar(&at, "at", "", "verify as of this time (RFC 3339), for recorded evidence")
	fs.StringVar(&policyPath, "policy", "", "key broker policy document to apply")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, ErrUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", ErrUsage, fs.Args())
	}
	if tee == "" || evidencePath == "" {
		return fmt.Errorf("%w: --tee and --evidence are required", ErrUsage)
	}
	isSNP := tee == snp.TEE || tee == sim.TEE
	if len(certs) > 0 && !isSNP {
		return fmt.Errorf("%w: --cert applies to snp and sim evidence", ErrUsage)
	}
	if collateralDir != "" && tee != tdx.TEE {
		return fmt.Errorf("%w: --collateral applies to tdx evidence", ErrUsage)
	}

	opts := verifier.Options{}
	if at != "" {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			return fmt.Errorf("%w: --at: %v", ErrUsage, err)
		}
		opts.Now = t
	}
	if policyPath != "" {
		data, err := readFile(policyPath)
		if err != nil {
			return err
		}
		doc, err := policy.Parse(data)
		if err != nil {
			return fmt.Errorf("policy %s: %w", policyPath, err)
		}
		opts.Policy = &doc
	}
	if tee == tdx.TEE {
		if collateralDir == "" {
			opts.TDXSkipTCBCheck = true
		} else {
			c, err := tdx.LoadCollateral(collateralDir)
			if err != nil {
				return err
			}
			opts.TDXCollateral = c
		}
	}

	raw, err := readFile(evidencePath)
	if err != nil {
		return err
	}
	evidence, err := evidenceJSON(tee, raw, certs)
	if err != nil {
		return fmt.Errorf("evidence %s: %w", evidencePath, err)
	}
	claims, err := verifier.Verify(ctx, tee, evidence, opts)
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(claims, "", "  ")
	if err != nil {
		return err
	}
	_, err = stdout.Write(append(out, '\n'))
	return err
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEvidenceFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxEvidenceFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxEvidenceFile)
	}
	return b, nil
}

// evidenceJSON returns the evidence as the JSON the verifier takes: the
// file as it is when it is JSON, else the raw report or quote wrapped,
// with the --cert certificates in an SNP chain.
func evidenceJSON(tee string, raw []byte, certFiles []string) ([]byte, error) {
	isJSON := len(bytes.TrimSpace(raw)) > 0 && bytes.TrimSpace(raw)[0] == '{'
	switch tee {
	case snp.TEE, sim.TEE:
		var ev snp.Evidence
		if isJSON {
			var err error
			if ev, err = snp.DecodeEvidence(raw); err != nil {
				return nil, err
			}
		} else {
			if len(raw) != abi.ReportSize {
				return nil, fmt.Errorf("neither evidence JSON nor a %d-byte attestation report (%d bytes)", abi.ReportSize, len(raw))
			}
			ev = snp.Evidence{TEE: tee, Report: raw}
		}
		if isJSON && len(certFiles) == 0 {
			return raw, nil
		}
		for _, path := range certFiles {
			if err := addCerts(&ev.CertChain, path); err != nil {
				return nil, err
			}
		}
		return ev.Marshal()
	case tdx.TEE:
		if isJSON {
			return raw, nil
		}
		return (&tdx.Evidence{TEE: tdx.TEE, Quote: raw}).Marshal()
	case vtpm.TEE:
		if !isJSON {
			return nil, errors.New("vtpm evidence must be JSON (vtpm.Evidence)")
		}
		return raw, nil
	}
	return nil, fmt.Errorf("%w %q", verifier.ErrUnknownTEE, tee)
}

// addCerts puts each certificate of a DER or PEM file in the chain slot
// its shape says: a self-signed CA is the ARK, another CA the ASK (or
// ASVK), an end-entity certificate the VCEK, or the VLEK when its subject
// says so. A certificate given twice for one slot is refused.
func addCerts(chain *snp.CertChain, path string) error {
	data, err := readFile(path)
	if err != nil {
		return err
	}
	var ders [][]byte
	if bytes.Contains(data, []byte("-----BEGIN")) {
		for rest := data; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type == "CERTIFICATE" {
				ders = append(ders, block.Bytes)
			}
		}
		if len(ders) == 0 {
			return fmt.Errorf("certificate %s: no CERTIFICATE PEM block", path)
		}
	} else {
		ders = [][]byte{data}
	}
	for _, der := range ders {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("certificate %s: %w", path, err)
		}
		var slot *[]byte
		var role string
		switch {
		case cert.IsCA && bytes.Equal(cert.RawSubject, cert.RawIssuer):
			slot, role = &chain.ARK, "ARK"
		case cert.IsCA:
			slot, role = &chain.ASK, "ASK"
		case strings.Contains(cert.Subject.CommonName, "VLEK"):
			slot, role = &chain.VLEK, "VLEK"
		default:
			slot, role = &chain.VCEK, "VCEK"
		}
		if *slot != nil && !bytes.Equal(*slot, der) {
			return fmt.Errorf("certificate %s: a second %s (%q)", path, role, cert.Subject.CommonName)
		}
		*slot = der
	}
	return nil
}
