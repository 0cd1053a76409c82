package shim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// VMEvidence is what AttestVM learns of a VM.
type VMEvidence struct {
	// TEE names the evidence's type ("vtpm", "snp", ...).
	TEE string `json:"tee"`
	// Evidence is the guest's evidence JSON, as a key broker receives
	// it, over attest.ReportData(Nonce, PublicKey).
	Evidence json.RawMessage `json:"evidence"`
	// Nonce is the challenge the evidence answers.
	Nonce string `json:"nonce"`
	// PublicKey is the guest agent's key, DER SubjectPublicKeyInfo.
	PublicKey []byte `json:"public_key"`
	// TPMEKPublic is the TPMT_PUBLIC of the vTPM's endorsement key, as
	// the guest's monitor read it.
	TPMEKPublic []byte `json:"tpm_ek_public,omitempty"`
	// ProvisionedAK is the TPMT_PUBLIC of the vTPM's attestation key as
	// the host read it before the VM started: the key a verifier pins for
	// this VM (vtpm.AKDigest of it).
	ProvisionedAK []byte `json:"provisioned_ak,omitempty"`
}

// AttestVM starts a VM as a sandbox of cfg starts (restored from the
// configuration's template when there is one), binds initData to it if
// given, asks its agent for evidence over nonce (a random one if empty)
// and stops it. It shows what a configuration's VMs attest to: the
// reference values and attestation keys a verifier's policy needs.
func AttestVM(ctx context.Context, cfg Config, nonce string, initData []byte) (_ *VMEvidence, retErr error) {
	if nonce == "" {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		nonce = hex.EncodeToString(b)
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	sb, err := startSandbox(ctx, cfg, "", "attest-"+hex.EncodeToString(id), nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		// A reused VM goes back to the pool, cleaned: attesting one is
		// what a sandbox of the configuration would get.
		if err := sb.end(context.WithoutCancel(ctx)); err != nil && retErr == nil {
			retErr = err
		}
	}()
	if len(initData) > 0 {
		if err := sb.bindInitData(ctx, initData); err != nil {
			return nil, err
		}
	}
	resp, err := sb.agent.GetEvidence(ctx, &agent.GetEvidenceRequest{Nonce: nonce})
	if err != nil {
		return nil, fmt.Errorf("get evidence: %w", fromAgent(err))
	}
	ev := &VMEvidence{
		TEE:         resp.GetTee(),
		Evidence:    resp.GetEvidence(),
		Nonce:       nonce,
		PublicKey:   resp.GetPublicKey(),
		TPMEKPublic: resp.GetTpmEkPublic(),
	}
	if sb.tpm != nil {
		ev.ProvisionedAK = sb.tpm.akPublic
	}
	return ev, nil
}
