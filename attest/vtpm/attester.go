package vtpm

import (
	"context"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// TEE is the name of this backend in evidence and in key broker requests.
const TEE = "vtpm"

// QualifyingDataSize is the size of the quote nonce that binds a quote to
// a key broker session (QualifyingData).
const QualifyingDataSize = 32

// QualifyingData returns the quote nonce for a key broker session: the
// first 32 bytes of reportData, the 64-byte attest.ReportData binding of
// the broker's nonce and the guest's tee-pubkey that SNP and TDX put in
// REPORT_DATA. A TPM's qualifying data (TPM2B_DATA) holds at most one
// digest of the largest hash the TPM implements, so 64 bytes do not fit a
// TPM without SHA-512; 32 bytes fit every TPM 2.0, and a SHA-512 output
// truncated to 256 bits still binds the session (128-bit collision
// resistance, like SHA-256).
func QualifyingData(reportData [64]byte) []byte {
	out := make([]byte, QualifyingDataSize)
	copy(out, reportData[:QualifyingDataSize])
	return out
}

// Attester produces vTPM evidence in the guest. It implements the key
// broker client's Attester interface: the quote's nonce is
// QualifyingData(reportData).
type Attester struct {
	// TPM is the TPM to quote with: OpenDevice(DefaultDevice) in a
	// guest, an swtpm command socket in tests.
	TPM transport.TPM
	// PCRs are the SHA-256 PCRs to quote; they must include every PCR
	// the broker's policy has reference values for.
	PCRs []int
	// EventLog, if set, supplies the event log to attach, such as a
	// Log's MarshalBinary or ReadEventLogFile.
	EventLog EventLogSource
}

// TEE returns "vtpm".
func (a *Attester) TEE() string { return TEE }

// Evidence quotes the PCRs with QualifyingData(reportData) and returns the
// evidence as JSON (Evidence.MarshalJSON).
func (a *Attester) Evidence(ctx context.Context, reportData [64]byte) ([]byte, error) {
	if a.TPM == nil {
		return nil, fmt.Errorf("get vtpm evidence: no TPM")
	}
	ev, err := GetEvidence(ctx, a.TPM, QualifyingData(reportData), a.PCRs, a.EventLog)
	if err != nil {
		return nil, err
	}
	return ev.MarshalJSON()
}

// DefaultDevice is the kernel's TPM resource manager: it lets several
// processes use the TPM and flushes what a crashed one left loaded.
const DefaultDevice = "/dev/tpmrm0"

// OpenDevice opens a TPM character device such as DefaultDevice. The
// caller must Close it.
func OpenDevice(path string) (transport.TPMCloser, error) {
	tpm, err := linuxtpm.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open tpm %s: %w", path, err)
	}
	return tpm, nil
}

// AKPublic returns the TPMT_PUBLIC of the attestation key GetEvidence
// quotes with. The AK is a primary key, the same on every call, so a host
// provisioning a vTPM can pin AKDigest(AKPublic(tpm)) in a verifier's
// policy before the guest ever attests.
func AKPublic(tpm transport.TPM) ([]byte, error) {
	ak, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(akTemplate),
	}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("create attestation key: %w", err)
	}
	defer func() {
		_, _ = tpm2.FlushContext{FlushHandle: ak.ObjectHandle}.Execute(tpm)
	}()
	pub, err := ak.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("attestation key public: %w", err)
	}
	return tpm2.Marshal(pub), nil
}
