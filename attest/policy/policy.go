package policy

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
	"github.com/sccontainers/scc/attest/tdx"
	"github.com/sccontainers/scc/attest/vtpm"
)

// TEEs are the TEE types a policy may name.
var TEEs = []string{snp.TEE, tdx.TEE, vtpm.TEE, sim.TEE}

// Sizes of the hex-encoded values of a document, in bytes.
const (
	MeasurementSize = 48 // SNP MEASUREMENT, TDX MRTD, RTMRs, MRCONFIGID, ...
	HostDataSize    = 32 // SNP HOST_DATA
	PCRSize         = 32 // SHA-256 PCR value
	AKDigestSize    = 32 // vtpm.AKDigest
	// SnapshotDigestSize is the SHA-256 of a template's saved state.
	SnapshotDigestSize = 32
	teeTcbSvnSize      = 16 // TDX TEE_TCB_SVN
	numRTMRs           = 4
)

// Errors of this package; match with errors.Is.
var (
	// ErrInvalid means a policy document failed to parse or validate.
	ErrInvalid = errors.New("invalid policy document")
	// ErrTEENotAllowed means the policy does not allow the TEE type.
	ErrTEENotAllowed = errors.New("TEE type not allowed by attestation policy")
	// ErrReferenceMismatch means verified evidence does not hold the
	// reference values the policy requires.
	ErrReferenceMismatch = errors.New("evidence does not match the policy's reference values")
	// ErrResourceDenied means a resource rule refused the session.
	ErrResourceDenied = errors.New("resource policy denies access")
	// ErrImageNotAllowed means the guest runs a container image the
	// policy does not list, or does not say which images it runs.
	ErrImageNotAllowed = errors.New("image not allowed by policy")
	// ErrOriginNotAllowed means a vTPM guest started in a way the
	// policy's origin terms do not accept: restored when it must have
	// booted fresh, or restored from a snapshot the policy does not
	// approve.
	ErrOriginNotAllowed = errors.New("guest origin not allowed by attestation policy")
)

// Document is the whole policy. The zero Document refuses every TEE.
type Document struct {
	// Attestation says per TEE type whether and how evidence is accepted.
	Attestation map[string]TEE `json:"attestation,omitempty"`
	// Workloads are named reference values, per TEE type.
	Workloads map[string]Workload `json:"workloads,omitempty"`
	// Resources are extra requirements per resource path pattern.
	Resources map[string]ResourceRule `json:"resources,omitempty"`
}

// TEE is the attestation policy of one TEE type: whether it is accepted,
// the platform terms its backend checks, and optional reference values
// that every guest of this type must match.
type TEE struct {
	// Allow must be true for evidence of this type to be accepted.
	Allow bool `json:"allow"`

	// Reference values at this level apply to every guest of the type;
	// see Reference for their meaning. Without them, each guest must
	// match a workload's.
	Measurements []string            `json:"measurements,omitempty"`
	HostData     string              `json:"host_data,omitempty"`
	MRTD         []string            `json:"mrtd,omitempty"`
	RTMRs        map[string][]string `json:"rtmrs,omitempty"`
	MRConfigID   string              `json:"mr_config_id,omitempty"`
	PCRs         map[string][]string `json:"pcrs,omitempty"`

	// AllowDebug accepts guests the host can debug (snp, sim: guest
	// policy DEBUG; tdx: TD_ATTRIBUTES.DEBUG): never for real secrets.
	AllowDebug bool `json:"allow_debug,omitempty"`
	// AllowMigrationAgent accepts guests that allow a migration agent (snp, sim).
	AllowMigrationAgent bool `json:"allow_migration_agent,omitempty"`
	// MinTCB is the minimum REPORTED_TCB (snp, sim).
	MinTCB *TCB `json:"min_tcb,omitempty"`
	// Roots are the accepted simulated roots (sim only, required):
	// SHA-256 fingerprints of their ARK certificate, hex.
	Roots []sim.RootFingerprint `json:"roots,omitempty"`

	// MROwner and MROwnerConfig are required TD fields (tdx), hex, 48 bytes.
	MROwner       string `json:"mr_owner,omitempty"`
	MROwnerConfig string `json:"mr_owner_config,omitempty"`
	// MRSeam is the required TDX module measurement (tdx), hex, 48 bytes.
	MRSeam string `json:"mr_seam,omitempty"`
	// MinTeeTcbSvn is the component-wise minimum TEE_TCB_SVN (tdx), hex,
	// 16 bytes; MinQESVN and MinPCESVN bound the quoting enclave. The
	// platform's TCB level is judged against Intel's collateral besides.
	MinTeeTcbSvn string `json:"min_tee_tcb_svn,omitempty"`
	MinQESVN     uint16 `json:"min_qe_svn,omitempty"`
	MinPCESVN    uint16 `json:"min_pce_svn,omitempty"`

	// TrustedAKs are the vTPM attestation keys trusted (vtpm only,
	// required): vtpm.AKDigest values, hex, 32 bytes.
	TrustedAKs []string `json:"trusted_aks,omitempty"`
	// Origin says how a guest must have started (vtpm only): booted
	// fresh, or restored from an approved snapshot, and how many tenants
	// it may have served before, as scc's trusted monitor records it in
	// the lifecycle PCR. Absent, any start is accepted.
	Origin *Origin `json:"origin,omitempty"`

	// Images, if set, are the container images guests of this type may
	// run: manifest (or index) digests, "sha256:<hex>". Every image the
	// guest reports having pulled must be one of them, and a guest that
	// reports none is refused. Absent, any image is accepted.
	Images []string `json:"images,omitempty"`
}

// Origin are the accepted ways for a vTPM guest to have started. A guest
// is accepted if it booted fresh and Fresh is set, or if every restore
// in its log is from one of Snapshots; and if it served at most
// MaxGeneration tenants before the current one. The lifecycle PCR
// (vtpm.PCRLifecycle) must be quoted.
type Origin struct {
	// Fresh accepts guests that booted and were never restored.
	Fresh bool `json:"fresh,omitempty"`
	// Snapshots are the approved snapshots, hex, 32 bytes: SHA-256 of a
	// template's saved state, as `scc snapshot list` shows it.
	Snapshots []string `json:"snapshots,omitempty"`
	// MaxGeneration accepts guests that were cleaned and reused after up
	// to this many earlier tenants (confidential-restore reuse: the
	// guest's monitor counts them in the lifecycle PCR). 0, the default,
	// accepts only guests that serve their first tenant.
	MaxGeneration uint64 `json:"max_generation,omitempty"`
}

// reference returns the TEE-level reference values.
func (t TEE) reference() Reference {
	return Reference{Measurements: t.Measurements, HostData: t.HostData, MRTD: t.MRTD, RTMRs: t.RTMRs, MRConfigID: t.MRConfigID, PCRs: t.PCRs}
}

// Reference are reference values: what a guest's verified evidence must
// hold. Every field set must match; a list matches when any entry does.
type Reference struct {
	// Measurements are accepted launch measurements (snp, sim:
	// MEASUREMENT), hex, 48 bytes.
	Measurements []string `json:"measurements,omitempty"`
	// HostData is the required HOST_DATA (snp, sim), hex, 32 bytes: the
	// digest of the pod's init data.
	HostData string `json:"host_data,omitempty"`
	// MRTD are accepted TD measurements (tdx), hex, 48 bytes.
	MRTD []string `json:"mrtd,omitempty"`
	// RTMRs maps an RTMR index ("0" to "3") to its accepted values (tdx),
	// hex, 48 bytes.
	RTMRs map[string][]string `json:"rtmrs,omitempty"`
	// MRConfigID is the required MRCONFIGID (tdx), hex, 48 bytes: the
	// digest of the pod's init data.
	MRConfigID string `json:"mr_config_id,omitempty"`
	// PCRs maps a PCR index ("0" to "23") to its accepted SHA-256 values
	// (vtpm), hex, 32 bytes. Each listed PCR must be quoted.
	PCRs map[string][]string `json:"pcrs,omitempty"`
}

// Workload holds one workload's reference values per TEE type it may run
// in, e.g. {"snp": {...}, "tdx": {...}}.
type Workload map[string]Reference

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
	// Measurements lists the launch measurements allowed (snp, sim:
	// MEASUREMENT; tdx: MRTD), hex; empty allows any the attestation
	// policy accepted.
	Measurements []string `json:"measurements,omitempty"`
	// Workloads lists the workloads allowed: the session must have
	// matched one of them. Empty allows any.
	Workloads []string `json:"workloads,omitempty"`
	// Images lists the container images (manifest or index digests,
	// "sha256:<hex>") a guest may run to get these resources: every image
	// it reports must be one of them. Empty allows any.
	Images []string `json:"images,omitempty"`
}

// Parse decodes and validates a whole policy document. Unknown members
// are refused, so that a misspelt requirement is an error, not ignored.
func Parse(data []byte) (Document, error) {
	var d Document
	if err := DecodeStrict(data, &d); err != nil {
		return Document{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := d.Validate(); err != nil {
		return Document{}, err
	}
	return d, nil
}

// DecodeStrict decodes one JSON value into v, refusing unknown members
// and trailing data.
func DecodeStrict(data []byte, v any) error {
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

var workloadNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$`)

// Validate checks the document refuses at set time what could never
// verify or is likely a mistake, rather than at every attestation.
// Errors wrap ErrInvalid.
func (d Document) Validate() error {
	for _, name := range slices.Sorted(maps.Keys(d.Workloads)) {
		if !workloadNameRE.MatchString(name) {
			return fmt.Errorf("%w: workload name %q", ErrInvalid, name)
		}
		w := d.Workloads[name]
		if len(w) == 0 {
			return fmt.Errorf("%w: workload %q has no reference values", ErrInvalid, name)
		}
		for _, tee := range slices.Sorted(maps.Keys(w)) {
			if !slices.Contains(TEEs, tee) {
				return fmt.Errorf("%w: workload %q: unknown TEE %q (known: %s)", ErrInvalid, name, tee, strings.Join(TEEs, ", "))
			}
			ref := w[tee]
			if err := ref.validate(tee); err != nil {
				return fmt.Errorf("%w: workload %q: %s: %v", ErrInvalid, name, tee, err)
			}
			if ref.empty() {
				return fmt.Errorf("%w: workload %q: %s: no reference values", ErrInvalid, name, tee)
			}
		}
	}
	for _, tee := range slices.Sorted(maps.Keys(d.Attestation)) {
		if !slices.Contains(TEEs, tee) {
			return fmt.Errorf("%w: unknown TEE %q (known: %s)", ErrInvalid, tee, strings.Join(TEEs, ", "))
		}
		if err := d.validateTEE(tee); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalid, tee, err)
		}
	}
	for _, pattern := range slices.Sorted(maps.Keys(d.Resources)) {
		if err := d.validateRule(pattern); err != nil {
			return fmt.Errorf("%w: resource pattern %q: %v", ErrInvalid, pattern, err)
		}
	}
	return nil
}

func (d Document) validateTEE(tee string) error {
	tp := d.Attestation[tee]
	if err := tp.reference().validate(tee); err != nil {
		return err
	}
	isSNP := tee == snp.TEE || tee == sim.TEE
	misplaced := []struct {
		set  bool
		name string
		ok   bool
	}{
		{tp.AllowDebug, "allow_debug", tee != vtpm.TEE},
		{tp.AllowMigrationAgent, "allow_migration_agent", isSNP},
		{tp.MinTCB != nil, "min_tcb", isSNP},
		{len(tp.Roots) > 0, "roots", tee == sim.TEE},
		{tp.MROwner != "", "mr_owner", tee == tdx.TEE},
		{tp.MROwnerConfig != "", "mr_owner_config", tee == tdx.TEE},
		{tp.MRSeam != "", "mr_seam", tee == tdx.TEE},
		{tp.MinTeeTcbSvn != "", "min_tee_tcb_svn", tee == tdx.TEE},
		{tp.MinQESVN != 0, "min_qe_svn", tee == tdx.TEE},
		{tp.MinPCESVN != 0, "min_pce_svn", tee == tdx.TEE},
		{len(tp.TrustedAKs) > 0, "trusted_aks", tee == vtpm.TEE},
		{tp.Origin != nil, "origin", tee == vtpm.TEE},
	}
	for _, m := range misplaced {
		if m.set && !m.ok {
			return fmt.Errorf("%s does not apply to %s", m.name, tee)
		}
	}
	for _, f := range []struct{ name, v string }{{"mr_owner", tp.MROwner}, {"mr_owner_config", tp.MROwnerConfig}, {"mr_seam", tp.MRSeam}} {
		if f.v != "" {
			if _, err := decodeHex(f.v, MeasurementSize); err != nil {
				return fmt.Errorf("%s: %v", f.name, err)
			}
		}
	}
	if tp.MinTeeTcbSvn != "" {
		if _, err := decodeHex(tp.MinTeeTcbSvn, teeTcbSvnSize); err != nil {
			return fmt.Errorf("min_tee_tcb_svn: %v", err)
		}
	}
	if _, err := decodeHexList(tp.TrustedAKs, AKDigestSize); err != nil {
		return fmt.Errorf("trusted_aks: %v", err)
	}
	if err := tp.Origin.validate(); err != nil {
		return fmt.Errorf("origin: %v", err)
	}
	if err := validateImages(tp.Images); err != nil {
		return err
	}
	if !tp.Allow {
		return nil
	}
	// Every accepted guest must be pinned by its launch measurement (PCRs
	// for a vTPM): at this level, or by each workload of this TEE type.
	pin := pinField(tee)
	if !tp.reference().has(pin) {
		n := 0
		for _, name := range slices.Sorted(maps.Keys(d.Workloads)) {
			ref, ok := d.Workloads[name][tee]
			if !ok {
				continue
			}
			if !ref.has(pin) {
				return fmt.Errorf("allowed without %s here, so workload %q needs %s", pin, name, pin)
			}
			n++
		}
		if n == 0 {
			return fmt.Errorf("allow needs reference values: %s here or in a workload", pin)
		}
	}
	if tee == sim.TEE && len(tp.Roots) == 0 {
		return errors.New("allowing sim needs the fingerprint of at least one simulated root")
	}
	if tee == vtpm.TEE && len(tp.TrustedAKs) == 0 {
		return errors.New("allowing vtpm needs at least one trusted attestation key digest (trusted_aks)")
	}
	return nil
}

// pinField is the reference value that identifies what a guest of a TEE
// type launched.
func pinField(tee string) string {
	switch tee {
	case tdx.TEE:
		return "mrtd"
	case vtpm.TEE:
		return "pcrs"
	default:
		return "measurements"
	}
}

func (r Reference) has(field string) bool {
	switch field {
	case "measurements":
		return len(r.Measurements) > 0
	case "mrtd":
		return len(r.MRTD) > 0
	case "pcrs":
		return len(r.PCRs) > 0
	}
	return false
}

func (r Reference) empty() bool {
	return len(r.Measurements) == 0 && r.HostData == "" && len(r.MRTD) == 0 && len(r.RTMRs) == 0 && r.MRConfigID == "" && len(r.PCRs) == 0
}

// validate checks the encodings and that only fields of tee are set.
func (r Reference) validate(tee string) error {
	isSNP := tee == snp.TEE || tee == sim.TEE
	for _, f := range []struct {
		set  bool
		name string
		ok   bool
	}{
		{len(r.Measurements) > 0, "measurements", isSNP},
		{r.HostData != "", "host_data", isSNP},
		{len(r.MRTD) > 0, "mrtd", tee == tdx.TEE},
		{len(r.RTMRs) > 0, "rtmrs", tee == tdx.TEE},
		{r.MRConfigID != "", "mr_config_id", tee == tdx.TEE},
		{len(r.PCRs) > 0, "pcrs", tee == vtpm.TEE},
	} {
		if f.set && !f.ok {
			return fmt.Errorf("%s does not apply to %s", f.name, tee)
		}
	}
	_, err := r.values()
	return err
}

// values returns the reference values by Values name, decoded.
func (r Reference) values() (map[string][][]byte, error) {
	out := map[string][][]byte{}
	add := func(name string, list []string, size int) error {
		if len(list) == 0 {
			return nil
		}
		b, err := decodeHexList(list, size)
		if err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		out[name] = b
		return nil
	}
	one := func(s string) []string {
		if s == "" {
			return nil
		}
		return []string{s}
	}
	if err := add("measurement", r.Measurements, MeasurementSize); err != nil {
		return nil, err
	}
	if err := add("host_data", one(r.HostData), HostDataSize); err != nil {
		return nil, err
	}
	if err := add("mrtd", r.MRTD, MeasurementSize); err != nil {
		return nil, err
	}
	if err := add("mr_config_id", one(r.MRConfigID), MeasurementSize); err != nil {
		return nil, err
	}
	for _, idx := range []struct {
		m      map[string][]string
		prefix string
		n      int
		size   int
	}{{r.RTMRs, "rtmr", numRTMRs, MeasurementSize}, {r.PCRs, "pcr", vtpm.NumPCRs, PCRSize}} {
		for _, k := range slices.Sorted(maps.Keys(idx.m)) {
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= idx.n || strconv.Itoa(i) != k {
				return nil, fmt.Errorf("%ss: index %q is not 0 to %d", idx.prefix, k, idx.n-1)
			}
			if len(idx.m[k]) == 0 {
				return nil, fmt.Errorf("%ss: %s has no accepted values", idx.prefix, k)
			}
			if err := add(idx.prefix+k, idx.m[k], idx.size); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
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

// validateImages checks a list of image digests.
func validateImages(images []string) error {
	for _, d := range images {
		if !attest.ValidDigest(d) {
			return fmt.Errorf("images: %q is not a sha256 digest (sha256:<64 lower-case hex>)", d)
		}
	}
	return nil
}

// CheckImages checks the images a verified guest of type tee runs (its
// event log's or the runtime claims it bound to its evidence) against
// the TEE policy's images. known is false when the evidence cannot tell
// (a vTPM quote without the image PCR). Errors wrap ErrImageNotAllowed.
func (d Document) CheckImages(tee string, images []attest.Image, known bool) error {
	allowed := d.Attestation[tee].Images
	if len(allowed) > 0 && !known {
		return fmt.Errorf("%w: the %s policy lists images, and the evidence does not show which the guest runs", ErrImageNotAllowed, tee)
	}
	return checkImages(allowed, images, "the "+tee+" policy")
}

// checkImages checks that every image is one of allowed (by manifest or
// index digest); an empty allowed accepts any.
func checkImages(allowed []string, images []attest.Image, who string) error {
	if len(allowed) == 0 {
		return nil
	}
	if len(images) == 0 {
		return fmt.Errorf("%w: %s lists images, and the guest reported none", ErrImageNotAllowed, who)
	}
	for _, img := range images {
		if !slices.ContainsFunc(img.Digests(), func(d string) bool { return slices.Contains(allowed, d) }) {
			return fmt.Errorf("%w: the guest runs image %s (%s), which %s does not list", ErrImageNotAllowed, img.Manifest, img.Reference, who)
		}
	}
	return nil
}
