package policy

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Values are the fields of verified evidence that reference values are
// compared with, by name: "measurement" and "host_data" (snp, sim);
// "mrtd", "rtmr0" to "rtmr3" and "mr_config_id" (tdx); "pcr0" to "pcr23"
// (vtpm, the quoted PCRs only).
type Values map[string][]byte

// Match checks the verified evidence of a guest of type tee against the
// document's reference values and returns the names of the workloads it
// matches, sorted. The evidence must hold the TEE-level reference values
// if the policy lists any (it may then match no workload); otherwise it
// must match at least one workload. Errors wrap ErrTEENotAllowed or
// ErrReferenceMismatch and name the field that differs.
func (d Document) Match(tee string, v Values) ([]string, error) {
	tp, ok := d.Attestation[tee]
	if !ok || !tp.Allow {
		return nil, fmt.Errorf("%w: %s", ErrTEENotAllowed, tee)
	}
	top, err := tp.reference().values()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, tee, err)
	}
	var matched, misses []string
	for _, name := range slices.Sorted(maps.Keys(d.Workloads)) {
		ref, ok := d.Workloads[name][tee]
		if !ok {
			continue
		}
		want, err := ref.values()
		if err != nil {
			return nil, fmt.Errorf("%w: workload %q: %v", ErrInvalid, name, err)
		}
		if err := compare(want, v); err != nil {
			misses = append(misses, fmt.Sprintf("workload %s: %v", name, err))
			continue
		}
		matched = append(matched, name)
	}
	if len(top) > 0 {
		if err := compare(top, v); err != nil {
			return nil, fmt.Errorf("%w: %s policy: %v", ErrReferenceMismatch, tee, err)
		}
		return matched, nil
	}
	if len(matched) == 0 {
		if len(misses) == 0 {
			return nil, fmt.Errorf("%w: the %s policy has no reference values", ErrReferenceMismatch, tee)
		}
		return nil, fmt.Errorf("%w: no workload matches (%s)", ErrReferenceMismatch, strings.Join(misses, "; "))
	}
	return matched, nil
}

// compare checks that every reference field holds one of its accepted
// values. Digests are compared in constant time, without early exit over
// the accepted values.
func compare(ref map[string][][]byte, v Values) error {
	for _, name := range slices.Sorted(maps.Keys(ref)) {
		got, ok := v[name]
		if !ok {
			return fmt.Errorf("%s is not in the evidence", name)
		}
		found := 0
		for _, want := range ref[name] {
			found |= subtle.ConstantTimeCompare(got, want)
		}
		if found != 1 {
			return fmt.Errorf("%s %s is not a reference value", name, hex.EncodeToString(got))
		}
	}
	return nil
}

// LaunchMeasurements returns the launch measurements accepted for tee
// (snp, sim): the TEE-level list, or else every workload's. A verifier
// checks membership first; Match then checks each workload's values
// together.
func (d Document) LaunchMeasurements(tee string) ([][]byte, error) {
	if m := d.Attestation[tee].Measurements; len(m) > 0 {
		return decodeHexList(m, MeasurementSize)
	}
	var out [][]byte
	for _, name := range slices.Sorted(maps.Keys(d.Workloads)) {
		ms, err := decodeHexList(d.Workloads[name][tee].Measurements, MeasurementSize)
		if err != nil {
			return nil, fmt.Errorf("%w: workload %q: %v", ErrInvalid, name, err)
		}
		out = append(out, ms...)
	}
	return out, nil
}
