package snp

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
)

// maxCertSize bounds each certificate in decoded evidence. AMD's VCEK and
// ASK/ARK certificates are 1-2 KiB; anything far larger is not a chain.
const maxCertSize = 16 << 10

// Evidence is what a guest sends to prove it runs in an SNP VM, and the
// JSON object carried as tee-evidence in a key broker attestation request:
//
//	{"tee": "snp", "report": "<base64>", "cert_chain": {"vcek": "<base64 DER>", "vlek": ..., "ask": ..., "ark": ...}}
//
// (standard base64 alphabet, as encoding/json writes []byte). The
// simulated TEE (attest/sim) uses the same layout with TEE "sim".
type Evidence struct {
	// TEE names the backend that produced the evidence: "snp" or "sim".
	TEE string `json:"tee"`
	// Report is the raw attestation report, abi.ReportSize (1184) bytes.
	Report []byte `json:"report"`
	// CertChain holds the DER certificates the host provided with it.
	CertChain CertChain `json:"cert_chain"`
}

// CertChain is the certificate chain of the key that signed a report.
type CertChain struct {
	VCEK []byte `json:"vcek,omitempty"`
	VLEK []byte `json:"vlek,omitempty"`
	// ASK is the ASK, or the ASVK when a VLEK signed the report.
	ASK []byte `json:"ask,omitempty"`
	ARK []byte `json:"ark,omitempty"`
}

// DecodeEvidence parses evidence JSON as produced by Attester.Evidence. It
// takes untrusted input: unknown members, a report of the wrong size and
// oversized certificates are refused. The report's contents are parsed
// later, by ParseReport.
func DecodeEvidence(data []byte) (Evidence, error) {
	var ev Evidence
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return Evidence{}, fmt.Errorf("%w: %v", ErrMalformedEvidence, err)
	}
	if dec.More() {
		return Evidence{}, fmt.Errorf("%w: trailing data after evidence", ErrMalformedEvidence)
	}
	if ev.TEE == "" {
		return Evidence{}, fmt.Errorf("%w: no tee", ErrMalformedEvidence)
	}
	if len(ev.Report) != abi.ReportSize {
		return Evidence{}, fmt.Errorf("%w: report is %d bytes, want %d", ErrMalformedEvidence, len(ev.Report), abi.ReportSize)
	}
	for name, c := range map[string][]byte{"vcek": ev.CertChain.VCEK, "vlek": ev.CertChain.VLEK, "ask": ev.CertChain.ASK, "ark": ev.CertChain.ARK} {
		if len(c) > maxCertSize {
			return Evidence{}, fmt.Errorf("%w: %s certificate is %d bytes", ErrMalformedEvidence, name, len(c))
		}
	}
	return ev, nil
}

// Marshal encodes the evidence as JSON, the inverse of DecodeEvidence.
func (e Evidence) Marshal() ([]byte, error) {
	return json.Marshal(e)
}

// ParseReport parses the raw report into go-sev-guest's structured form,
// refusing a wrong size or non-zero reserved fields.
func (e Evidence) ParseReport() (*spb.Report, error) {
	if len(e.Report) != abi.ReportSize {
		return nil, fmt.Errorf("%w: report is %d bytes, want %d", ErrMalformedEvidence, len(e.Report), abi.ReportSize)
	}
	rep, err := abi.ReportToProto(e.Report)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedEvidence, err)
	}
	return rep, nil
}

func (c CertChain) proto() *spb.CertificateChain {
	return &spb.CertificateChain{
		VcekCert: c.VCEK,
		VlekCert: c.VLEK,
		AskCert:  c.ASK,
		ArkCert:  c.ARK,
		Extras:   map[string][]byte{},
	}
}

func certChainFromProto(c *spb.CertificateChain) CertChain {
	return CertChain{VCEK: c.GetVcekCert(), VLEK: c.GetVlekCert(), ASK: c.GetAskCert(), ARK: c.GetArkCert()}
}
