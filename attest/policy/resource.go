package policy

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/sccontainers/scc/attest"
)

// Session is what resource rules judge: the facts of an attested session.
type Session struct {
	// TEE is the session's TEE type.
	TEE string
	// Measurement is the launch measurement, hex (snp, sim: MEASUREMENT;
	// tdx: MRTD; empty for vtpm).
	Measurement string
	// Workloads are the workloads the evidence matched.
	Workloads []string
	// Images are the container images the guest reported.
	Images []attest.Image
}

// AllowResource applies every rule whose pattern matches resource
// ("repository/type/tag"). Errors wrap ErrResourceDenied and say which
// rule refused and why.
func (d Document) AllowResource(resource string, s Session) error {
	for _, pattern := range slices.Sorted(maps.Keys(d.Resources)) {
		if ok, _ := path.Match(pattern, resource); !ok {
			continue
		}
		rule := d.Resources[pattern]
		if len(rule.TEEs) > 0 && !slices.Contains(rule.TEEs, s.TEE) {
			return fmt.Errorf("%w: rule %q does not allow TEE %q", ErrResourceDenied, pattern, s.TEE)
		}
		if len(rule.Measurements) > 0 && !slices.ContainsFunc(rule.Measurements, func(m string) bool {
			return s.Measurement != "" && strings.EqualFold(m, s.Measurement)
		}) {
			return fmt.Errorf("%w: rule %q does not allow measurement %q", ErrResourceDenied, pattern, s.Measurement)
		}
		if len(rule.Workloads) > 0 && !slices.ContainsFunc(rule.Workloads, func(w string) bool {
			return slices.Contains(s.Workloads, w)
		}) {
			return fmt.Errorf("%w: rule %q allows workloads %s, the session matched %s",
				ErrResourceDenied, pattern, list(rule.Workloads), list(s.Workloads))
		}
		if err := checkImages(rule.Images, s.Images, fmt.Sprintf("rule %q", pattern)); err != nil {
			return fmt.Errorf("%w: %w", ErrResourceDenied, err)
		}
	}
	return nil
}

func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return "[" + strings.Join(names, ", ") + "]"
}

func (d Document) validateRule(pattern string) error {
	if err := validatePattern(pattern); err != nil {
		return err
	}
	rule := d.Resources[pattern]
	for _, tee := range rule.TEEs {
		if !slices.Contains(TEEs, tee) {
			return fmt.Errorf("unknown TEE %q", tee)
		}
	}
	if _, err := decodeHexList(rule.Measurements, MeasurementSize); err != nil {
		return err
	}
	if err := validateImages(rule.Images); err != nil {
		return err
	}
	for _, w := range rule.Workloads {
		if _, ok := d.Workloads[w]; !ok {
			return fmt.Errorf("unknown workload %q", w)
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
