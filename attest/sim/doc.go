// Package sim is a simulated TEE for machines without SEV-SNP or TDX
// hardware: local development, CI, and tests of the key broker protocol.
//
// IT OFFERS NO SECURITY. The "hardware" signing key (a VCEK look-alike) is
// an ordinary file the host hands to the guest, so the host, and anyone who
// can read that file, can forge any report. Nothing protects guest memory.
//
// What it does keep from the real thing is the shape: reports in the SNP
// ABI format (1184 bytes, ECDSA P-384 signature over SHA-384) signed by a
// VCEK-style key certified by an ASK and an ARK, all ECDSA P-384, so the
// whole attestation path (evidence, REPORT_DATA binding, measurement
// policy, key release) runs unchanged.
//
// To stop simulated evidence from ever passing as hardware evidence:
//   - it says "tee": "sim", and the SNP verifier refuses anything else than
//     "snp"; relabelled as "snp" it still fails, because AMD's roots do not
//     sign its chain (and its certificates are not shaped like AMD's);
//   - Verify accepts it only when Options.AllowSim names the fingerprint of
//     this authority's root explicitly; an empty list refuses with
//     ErrSimNotAllowed. A key broker's default policy has no such entry.
//
// The authority (NewAuthority) lives in a directory on the host. Its
// GuestCredentials (the VCEK private key and the chain, PEM) reach the guest
// through whatever channel the host uses for configuration; the guest makes
// an Attester from them with NewAttester.
package sim

// TEE is the name of this backend in evidence and in key broker requests.
const TEE = "sim"
