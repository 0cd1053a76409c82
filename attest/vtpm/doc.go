// Package vtpm produces and verifies TPM 2.0 quotes: evidence that a
// (virtual) TPM's SHA-256 PCRs hold given values, fresh for a verifier's
// nonce, with an event log that explains how they got there.
//
// The prover calls GetEvidence with the TPM (in an scc guest, the vTPM
// that swtpm emulates for the VM). It creates an attestation key (AK), a
// restricted ECC P-256 signing key under the endorsement hierarchy, so the
// TPM signs only attestation structures it produced itself, quotes the
// requested PCRs with the verifier's nonce and attaches the event log.
//
// The verifier calls Verify. It checks the quote's signature with the AK,
// the nonce, that the supplied PCR values are the quoted ones, that the
// event log replays to them, and the caller's expected PCR values.
//
// Trusting the AK is the caller's job: a quote proves only that whoever
// holds the AK saw these PCR values. Verify accepts an AK whose digest
// (AKDigest) the caller pins in VerifyOptions.TrustedAKs, or any AK when
// InsecureAcceptAnyAK is set (tests only). A deployment binds the AK to
// hardware beforehand, either with the TPM's EK certificate (credential
// activation) or, for a vTPM inside a confidential VM, by having the TEE
// report carry AKDigest in its REPORT_DATA, so that the hardware vouches
// for the AK and the AK for the PCRs.
//
// For a key broker (attest/kbs) the evidence travels as JSON
// (Evidence.MarshalJSON, DecodeEvidence) and the quote's nonce is
// QualifyingData of the session's 64-byte REPORT_DATA binding, its first
// 32 bytes, as every TPM accepts 32 bytes of qualifying data. Attester
// produces it in a guest, on the TPM OpenDevice opens (/dev/tpmrm0).
//
// Two event log formats are replayed: the TCG PC Client crypto-agile log
// that firmware writes, and Log, scc's own log written by its trusted
// monitor (see Log for its encoding). Verify tells them apart by Log's
// magic. The monitor's PCRs and event types are in events.go: PCRBoot
// holds what booted, PCRInitData the pod's init data and PCRLifecycle the
// restores from snapshots, which OriginOf reads back from verified
// claims.
package vtpm
