// Package attest holds what every TEE backend and the key broker share: the
// binding of an attestation report to one key broker session.
//
// The TEE backends live in their own packages: attest/snp (AMD SEV-SNP),
// attest/sim (a simulated TEE for machines without one; no security), and
// the key broker server and guest client in attest/kbs and
// attest/kbs/client.
package attest
