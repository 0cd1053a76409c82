package kbs

import (
	"github.com/sccontainers/scc/attest/policy"
)

// The policy document is package policy's; these names keep the broker's
// API in one place for its users.
type (
	// Policy is the broker's whole policy document; doc.go describes its JSON.
	// The zero Policy (the default) refuses every TEE.
	Policy = policy.Document
	// TEEPolicy is the attestation policy of one TEE type.
	TEEPolicy = policy.TEE
	// Reference are reference values (TEEPolicy's, or a Workload's).
	Reference = policy.Reference
	// Workload holds one workload's reference values per TEE type.
	Workload = policy.Workload
	// TCB is a minimum SNP TCB by component security patch level.
	TCB = policy.TCB
	// ResourceRule restricts who gets the resources whose path matches its pattern.
	ResourceRule = policy.ResourceRule
)

var (
	// ErrInvalidPolicyDocument means a policy document failed to parse or validate.
	ErrInvalidPolicyDocument = policy.ErrInvalid
	// ErrResourceDenied means a resource rule refused the session's claims.
	ErrResourceDenied = policy.ErrResourceDenied
	// ErrTEENotAllowed means the policy does not allow the evidence's TEE type.
	ErrTEENotAllowed = policy.ErrTEENotAllowed
)

// ParsePolicy decodes and validates a whole policy document.
func ParsePolicy(data []byte) (Policy, error) {
	return policy.Parse(data)
}

// decodeStrict decodes one JSON value, refusing unknown members and
// trailing data.
func decodeStrict(data []byte, v any) error {
	return policy.DecodeStrict(data, v)
}

// session returns what resource rules judge of an attested session.
func (c tokenClaims) session() policy.Session {
	return policy.Session{TEE: c.TEE, Measurement: c.Measurement, Workloads: c.Workloads, Images: c.Images}
}
