package vtpm

import (
	"crypto/sha256"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// akTemplate is the attestation key: a restricted signing key, so the TPM
// signs only digests it computed itself (a quote's TPMS_ATTEST) and
// cannot be made to sign a forged one. It is a primary key: the same TPM
// derives the same AK from the hierarchy seed every time, so a verifier
// can pin it.
var akTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		Restricted:          true,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		Scheme: tpm2.TPMTECCScheme{
			Scheme: tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA,
				&tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
	}),
}

// AKDigest is the value that identifies an AK to a verifier: SHA-256 of
// its TPMT_PUBLIC encoding (Evidence.AKPublic). It is what
// VerifyOptions.TrustedAKs pins and what a TEE report's REPORT_DATA should
// carry to bind the AK to the hardware. For an AK whose name algorithm is
// SHA-256 (as GetEvidence creates) it is also the digest part of the TPM
// name (AKName).
func AKDigest(akPublic []byte) [32]byte {
	return sha256.Sum256(akPublic)
}

// AKName returns the TPM name of the AK (name algorithm || digest of
// TPMT_PUBLIC), as TPM commands such as TPM2_Certify refer to it.
func AKName(akPublic []byte) ([]byte, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](akPublic)
	if err != nil {
		return nil, fmt.Errorf("ak name: %w: %v", ErrMalformed, err)
	}
	name, err := tpm2.ObjectName(pub)
	if err != nil {
		return nil, fmt.Errorf("ak name: %w", err)
	}
	return name.Buffer, nil
}
