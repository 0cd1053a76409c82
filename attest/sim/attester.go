package sim

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha512"
	"fmt"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"

	"github.com/sccontainers/scc/attest/snp"
)

// defaultGuestPolicy allows SMT and sets the reserved bit 17, like the
// policy QEMU gives an SNP guest by default; debug and migration agent off.
const defaultGuestPolicy = 0x30000

// Config is what the simulated firmware puts in its reports. On real
// hardware these come from the launch; here the host chooses them, which
// is exactly why the simulation proves nothing.
type Config struct {
	// Measurement is reported as MEASUREMENT. A host that wants the key
	// broker policy to read like a real one sets it to the launch digest
	// of the VM's firmware, kernel and command line (attest/snp/measure).
	Measurement [abi.MeasurementSize]byte
	// HostData is reported as HOST_DATA.
	HostData [abi.HostDataSize]byte
	// Policy is the guest policy; zero means 0x30000 (no debug).
	Policy uint64
	// TCB is reported as REPORTED_TCB, CURRENT_TCB, COMMITTED_TCB and
	// LAUNCH_TCB (the SNP TCB_VERSION encoding, see kds.TCBParts), so that
	// a key broker's minimum TCB can be exercised.
	TCB uint64
}

// Attester produces simulated evidence in the guest. It implements the key
// broker client's Attester interface.
type Attester struct {
	creds *credentials
	cfg   Config
}

// NewAttester makes an attester from Authority.GuestCredentials.
func NewAttester(guestCredentials []byte, cfg Config) (*Attester, error) {
	creds, err := parseCredentials(guestCredentials)
	if err != nil {
		return nil, fmt.Errorf("load sim guest credentials: %w", err)
	}
	return &Attester{creds: creds, cfg: cfg}, nil
}

// TEE returns "sim".
func (a *Attester) TEE() string { return TEE }

// Evidence returns JSON evidence for reportData, as snp.DecodeEvidence reads it.
func (a *Attester) Evidence(ctx context.Context, reportData [64]byte) ([]byte, error) {
	ev, err := a.GetEvidence(ctx, reportData)
	if err != nil {
		return nil, err
	}
	return ev.Marshal()
}

// GetEvidence returns a signed report carrying reportData and the chain.
func (a *Attester) GetEvidence(ctx context.Context, reportData [64]byte) (snp.Evidence, error) {
	if err := ctx.Err(); err != nil {
		return snp.Evidence{}, err
	}
	report, err := a.report(reportData)
	if err != nil {
		return snp.Evidence{}, fmt.Errorf("make sim report: %w", err)
	}
	return snp.Evidence{
		TEE:    TEE,
		Report: report,
		CertChain: snp.CertChain{
			VCEK: a.creds.vcek.Raw,
			ASK:  a.creds.ask.Raw,
			ARK:  a.creds.ark.Raw,
		},
	}, nil
}

func (a *Attester) report(reportData [64]byte) ([]byte, error) {
	policy := a.cfg.Policy
	if policy == 0 {
		policy = defaultGuestPolicy
	}
	chipID := sha512.Sum512(a.creds.vcek.Raw)
	reportID := make([]byte, abi.ReportIDSize)
	if _, err := rand.Read(reportID); err != nil {
		return nil, err
	}
	rep := &spb.Report{
		Version:         2,
		Policy:          policy,
		FamilyId:        make([]byte, abi.FamilyIDSize),
		ImageId:         make([]byte, abi.ImageIDSize),
		SignatureAlgo:   uint32(abi.SignEcdsaP384Sha384),
		ReportData:      reportData[:],
		Measurement:     a.cfg.Measurement[:],
		HostData:        a.cfg.HostData[:],
		IdKeyDigest:     make([]byte, abi.IDKeyDigestSize),
		AuthorKeyDigest: make([]byte, abi.AuthorKeyDigestSize),
		ReportId:        reportID,
		ReportIdMa:      make([]byte, abi.ReportIDMASize),
		ChipId:          chipID[:],
		ReportedTcb:     a.cfg.TCB,
		CurrentTcb:      a.cfg.TCB,
		CommittedTcb:    a.cfg.TCB,
		LaunchTcb:       a.cfg.TCB,
		Signature:       make([]byte, abi.SignatureSize),
	}
	raw, err := abi.ReportToAbiBytes(rep)
	if err != nil {
		return nil, err
	}
	digest := sha384(abi.SignedComponent(raw))
	r, s, err := ecdsa.Sign(rand.Reader, a.creds.vcekKey, digest)
	if err != nil {
		return nil, err
	}
	if err := abi.SetSignature(r, s, raw); err != nil {
		return nil, err
	}
	return raw, nil
}

func sha384(b []byte) []byte {
	h := sha512.Sum384(b)
	return h[:]
}
