// Package attest holds what every TEE backend and the key broker share: the
// binding of attestation evidence to one key broker session, and what a
// guest claims in it about the images it runs (RuntimeClaims).
//
// The rest is in packages of their own:
//
//	attest/snp       AMD SEV-SNP evidence and offline verification
//	attest/tdx       Intel TDX quotes, verified offline with Intel PCS collateral
//	attest/vtpm      TPM 2.0 quotes and event logs (a VM's vTPM, swtpm)
//	attest/sim       a simulated TEE for machines without one; no security
//	attest/policy    the key broker's policy document: TEE terms, workloads' reference values, resource rules
//	attest/verifier  verification of any TEE's evidence against a policy
//	attest/kbs       the key broker (Trustee KBS protocol), scc-kbs
//	attest/client    the guest side of the key broker protocol
//	attest/verifycli scc attest verify
//
// docs/attestation.md describes how they fit together.
package attest
