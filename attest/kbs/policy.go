package kbs

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"

	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
)

// Policy is the broker's whole policy document; doc.go describes its JSON.
// The zero Policy (the default) refuses every TEE.
type Policy struct {
	// Attestation says per TEE type whether and how evidence is accepted.
	Attestation map[string]TEEPolicy `json:"attestation,omitempty"`
	// Resources are extra requirements per resource path pattern.
	Resources map[string]ResourceRule `json:"resources,omitempty"`
}

// TEEPolicy is the attestation policy of one TEE type.
type TEEPolicy struct {
	// Allow must be true for evidence of this type to be accepted.
	Allow bool `json:"allow"`
	// Measurements are the accepted launch measurements, hex (48 bytes
	// for snp and sim). Required when Allow is true.
	Measurements []string `json:"measurements,omitempty"`
	// AllowDebug accepts guests whose policy allows the host to debug them.
	AllowDebug bool `json:"allow_debug,omitempty"`
	// AllowMigrationAgent accepts guests that allow a migration agent.
	AllowMigrationAgent bool `json:"allow_migration_agent,omitempty"`
	// HostData, if set, is the required HOST_DATA, hex (32 bytes).
	HostData string `json:"host_data,omitempty"`
	// MinTCB is the minimum reported TCB (snp).
	MinTCB *TCB `json:"min_tcb,omitempty"`
	// Roots are the accepted simulated roots (sim only): SHA-256
	// fingerprints of their ARK certificate, hex. Required for sim.
	Roots []sim.RootFingerprint `json:"roots,omitempty"`
}

// TCB is a minimum SNP TCB by component security patch level.
type TCB struct {
	Bootloader uint8 `json:"bootloader"`
	TEE        uint8 `json:"tee"`
	SNP        uint8 `json:"snp"`
	Microcode  uint8 `json:"microcode"`
}

// ResourceRule restricts who gets the resources whose path matches its
// pattern. Every rule whose pattern matches applies.
type ResourceRule struct {
	// TEEs lists the TEE types allowed; empty allows any attested type.
	TEEs []string `json:"tees,omitempty"`
	// Measurements lists the launch measurements allowed, hex; empty
	// allows any the attestation policy accepted.
	Measurements []string `json:"measurements,omitempty"`
}

// teeNames are the TEE types this broker verifies.
var teeNames = []string{snp.TEE, sim.TEE}

// ErrInvalidPolicyDocument means a policy document failed to parse or validate.
var ErrInvalidPolicyDocument = errors.New("invalid policy document")

// ParsePolicy decodes and validates a whole policy document.
func ParsePolicy(data []byte) (Policy, error) {
	var p Policy
	if err := decodeStrict(data, &p); err != nil {
		return Policy{}, fmt.Errorf("%w: %v", ErrInvalidPolicyDocument, err)
	}
	if err := p.validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

func (p Policy) validate() error {
	for tee, tp := range p.Attestation {
		if !slices.Contains(teeNames, tee) {
			return fmt.Errorf("%w: unknown TEE %q (known: %s)", ErrInvalidPolicyDocument, tee, strings.Join(teeNames, ", "))
		}
		if err := tp.validate(tee); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalidPolicyDocument, tee, err)
		}
	}
	for pattern, rule := range p.Resources {
		if err := validatePattern(pattern); err != nil {
			return fmt.Errorf("%w: resource pattern %q: %v", ErrInvalidPolicyDocument, pattern, err)
		}
		for _, tee := range rule.TEEs {
			if !slices.Contains(teeNames, tee) {
				return fmt.Errorf("%w: resource pattern %q: unknown TEE %q", ErrInvalidPolicyDocument, pattern, tee)
			}
		}
		if _, err := decodeHexList(rule.Measurements, abi.MeasurementSize); err != nil {
			return fmt.Errorf("%w: resource pattern %q: %v", ErrInvalidPolicyDocument, pattern, err)
		}
	}
	return nil
}

func (tp TEEPolicy) validate(tee string) error {
	if _, err := decodeHexList(tp.Measurements, abi.MeasurementSize); err != nil {
		return err
	}
	if tp.HostData != "" {
		if _, err := decodeHex(tp.HostData, abi.HostDataSize); err != nil {
			return fmt.Errorf("host_data: %v", err)
		}
	}
	if tee != sim.TEE && len(tp.Roots) > 0 {
		return errors.New("roots are only for sim")
	}
	if !tp.Allow {
		return nil
	}
	// Refuse at set time what could never verify, rather than at every
	// attestation.
	if len(tp.Measurements) == 0 {
		return errors.New("allow needs at least one reference measurement")
	}
	if tee == sim.TEE && len(tp.Roots) == 0 {
		return errors.New("allowing sim needs the fingerprint of at least one simulated root")
	}
	return nil
}

// snpPolicy is the verifier policy for one session.
func (tp TEEPolicy) snpPolicy(reportData []byte) (snp.Policy, error) {
	ms, err := decodeHexList(tp.Measurements, abi.MeasurementSize)
	if err != nil {
		return snp.Policy{}, err
	}
	p := snp.Policy{
		Measurements:        ms,
		ReportData:          reportData,
		AllowDebug:          tp.AllowDebug,
		AllowMigrationAgent: tp.AllowMigrationAgent,
	}
	if tp.HostData != "" {
		if p.HostData, err = decodeHex(tp.HostData, abi.HostDataSize); err != nil {
			return snp.Policy{}, err
		}
	}
	if tp.MinTCB != nil {
		p.MinimumTCB = kds.TCBParts{BlSpl: tp.MinTCB.Bootloader, TeeSpl: tp.MinTCB.TEE, SnpSpl: tp.MinTCB.SNP, UcodeSpl: tp.MinTCB.Microcode}
	}
	return p, nil
}

// ErrResourceDenied means a resource rule refused the session's claims.
var ErrResourceDenied = errors.New("resource policy denies access")

// allowResource applies every rule whose pattern matches resource.
func (p Policy) allowResource(resource string, c tokenClaims) error {
	patterns := make([]string, 0, len(p.Resources))
	for pattern := range p.Resources {
		patterns = append(patterns, pattern)
	}
	sort.Strings(patterns)
	for _, pattern := range patterns {
		if ok, _ := path.Match(pattern, resource); !ok {
			continue
		}
		rule := p.Resources[pattern]
		if len(rule.TEEs) > 0 && !slices.Contains(rule.TEEs, c.TEE) {
			return fmt.Errorf("%w: rule %q does not allow TEE %q", ErrResourceDenied, pattern, c.TEE)
		}
		if len(rule.Measurements) > 0 && !slices.ContainsFunc(rule.Measurements, func(m string) bool {
			return strings.EqualFold(m, c.Measurement)
		}) {
			return fmt.Errorf("%w: rule %q does not allow measurement %s", ErrResourceDenied, pattern, c.Measurement)
		}
	}
	return nil
}

// validatePattern accepts "repo/type/tag" where each segment is a name or
// a path.Match pattern.
func validatePattern(pattern string) error {
	parts := strings.Split(pattern, "/")
	if len(parts) != 3 {
		return errors.New("want repository/type/tag")
	}
	for _, part := range parts {
		if part == "" {
			return errors.New("empty segment")
		}
	}
	_, err := path.Match(pattern, "")
	return err
}

func decodeHex(s string, size int) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not hex", s)
	}
	if len(b) != size {
		return nil, fmt.Errorf("%q is %d bytes, want %d", s, len(b), size)
	}
	return b, nil
}

func decodeHexList(list []string, size int) ([][]byte, error) {
	out := make([][]byte, 0, len(list))
	for _, s := range list {
		b, err := decodeHex(s, size)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}
