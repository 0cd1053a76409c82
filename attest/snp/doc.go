// Package snp produces and verifies AMD SEV-SNP attestation evidence.
//
// Evidence is the 1184-byte attestation report in the firmware's ABI format
// plus the certificate chain of the key that signed it (VCEK or VLEK, with
// the ASK/ASVK and ARK when the host provides them). The guest side gets it
// from the configfs-tsm report interface or /dev/sev-guest (GetEvidence,
// Attester); the verifier (Verify) checks the signature and the chain with
// go-sev-guest's verify package against AMD's roots embedded in go-sev-guest
// (or Options.TrustedRoots), then the report against a Policy, with go-sev-guest's
// validate package and with this package's own checks that report typed
// errors.
//
// Verification is offline by default: the endorsement key certificate must
// travel in the evidence, and Options.Getter is nil so no certificate is
// fetched from AMD's key distribution service. The ASK and ARK carried in the
// evidence are informational: trust comes only from TrustedRoots or the
// embedded AMD roots, never from certificates the guest sends.
package snp

// TEE is the name of this backend in evidence and in key broker requests.
const TEE = "snp"
