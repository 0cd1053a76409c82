// Package policy is the key broker's policy document: which TEE types are
// accepted and on what platform terms (TCB, debug, trusted roots and
// attestation keys), the reference values of each workload (launch
// measurement, HOST_DATA, MRTD, RTMRs, MRCONFIGID, PCRs), and which
// workloads may receive which resources.
//
// attest/kbs enforces it on every attestation and resource request, and
// scc attest verify applies it to recorded evidence. The backends verify
// the evidence and check the platform terms; this package checks the
// reference values (Document.Match) and the resource rules
// (Document.AllowResource). Parse reads the JSON document; its format is
// described in package kbs and in docs/attestation.md.
package policy
