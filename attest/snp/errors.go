package snp

import "errors"

// Sentinel errors. Every error Verify returns for refused evidence wraps
// one of these so that the key broker can tell a policy refusal from
// forged or malformed evidence with errors.Is.
var (
	// ErrMalformedEvidence means the evidence could not be decoded: bad
	// JSON, a report of the wrong size or with non-zero reserved fields.
	ErrMalformedEvidence = errors.New("malformed SNP evidence")

	// ErrWrongTEE means the evidence names another TEE than the verifier's.
	ErrWrongTEE = errors.New("evidence is for another TEE")

	// ErrInvalidPolicy means the Policy is incomplete or inconsistent: no
	// reference measurement, no REPORT_DATA to bind to, a field of the
	// wrong size.
	ErrInvalidPolicy = errors.New("invalid SNP verification policy")

	// ErrSignature means the report signature or the certificate chain of
	// its signing key does not verify against the trusted roots (forged,
	// expired, or signed by a root that is not trusted).
	ErrSignature = errors.New("SNP report signature or certificate chain not valid")

	// ErrMeasurementMismatch means MEASUREMENT is none of the reference values.
	ErrMeasurementMismatch = errors.New("SNP launch measurement mismatch")

	// ErrDebugRefused means the guest policy allows debugging (the host can
	// read guest memory) and the Policy does not accept that.
	ErrDebugRefused = errors.New("SNP guest policy allows debug")

	// ErrMigrationAgentRefused means the guest policy allows a migration
	// agent and the Policy does not accept that.
	ErrMigrationAgentRefused = errors.New("SNP guest policy allows a migration agent")

	// ErrReportDataMismatch means REPORT_DATA is not the expected binding:
	// the report was made for another session or another key.
	ErrReportDataMismatch = errors.New("SNP REPORT_DATA mismatch")

	// ErrHostDataMismatch means HOST_DATA is not the expected value.
	ErrHostDataMismatch = errors.New("SNP HOST_DATA mismatch")

	// ErrTCBTooLow means REPORTED_TCB is below the Policy's minimum in at
	// least one component.
	ErrTCBTooLow = errors.New("SNP reported TCB below minimum")

	// ErrPolicyViolation means go-sev-guest's validate package refused the
	// report for a reason without its own sentinel above (inconsistent TCB
	// values, chip ID not matching the VCEK, ...).
	ErrPolicyViolation = errors.New("SNP report violates policy")
)
