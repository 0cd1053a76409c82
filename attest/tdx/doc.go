// Package tdx obtains and verifies Intel TDX attestation quotes (version
// 4), through github.com/google/go-tdx-guest.
//
// In a TD guest, GetEvidence asks the TDX quoting service for a quote over
// the caller's 64-byte REPORT_DATA (through configfs-tsm, or the
// /dev/tdx_guest device on older kernels).
//
// Verify checks a quote offline: the PCK certificate chain it carries up
// to Intel's SGX root CA (or Options.TrustedRoots), the QE report and the
// quote signature, and, given collateral (Intel PCS's TCB info and QE
// identity, and CRLs when revocation is checked), that the platform's TCB
// level is up to date. Collateral is passed in Options.Collateral; nothing
// is fetched from the network unless the caller supplies a Getter that
// does. It then checks the TD's measurements (MRTD, RTMRs, MRCONFIGID,
// MROWNER, MROWNERCONFIG) and REPORT_DATA against Options.Policy and
// refuses a debuggable TD unless the policy allows it.
package tdx
