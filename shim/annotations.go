package shim

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// Pod annotations that override the runtime configuration of the pod's VM.
// containerd passes pod annotations to the runtime only when they match the
// runtime handler's pod_annotations (`scc install` sets ["io.scc.*"]), and
// the shim applies only those the administrator enabled in config.toml's
// enable_annotations.
const (
	// AnnotationVCPUs replaces vm.vcpus, the VM's base vCPU count (1..64);
	// the pod's CPU limit is still added to it.
	AnnotationVCPUs = "io.scc.vm.vcpus"
	// AnnotationMemoryMiB replaces vm.memory_mib, the VM's base memory in
	// MiB (128..65536); the pod's memory limit is still added to it.
	AnnotationMemoryMiB = "io.scc.vm.memory_mib"
	// AnnotationKernelParams appends space-separated parameters to the
	// guest kernel's command line (after vm.kernel_params).
	AnnotationKernelParams = "io.scc.vm.kernel_params"
	// AnnotationSnapshot set to "false" makes the pod's VM boot instead of
	// being restored from a VM template. A pod cannot turn templates on
	// when the configuration has them off.
	AnnotationSnapshot = "io.scc.snapshot.enabled"
	// AnnotationConfidential set to "true" makes the pod (or lone
	// container) confidential, as confidential.enabled does: the guest
	// pulls and decrypts each container's image, and the host's rootfs is
	// not shared. A pod cannot turn it off when the configuration has it
	// on.
	AnnotationConfidential = "io.scc.confidential"

	annotationPrefix = "io.scc."
)

// Limits of the annotation values.
const (
	minAnnotationVCPUs     = 1
	maxAnnotationVCPUs     = 64
	minAnnotationMemoryMiB = 128
	maxAnnotationMemoryMiB = 65536
	// maxKernelParamsLen keeps the whole command line well inside the
	// kernel's limit (2048 bytes on x86).
	maxKernelParamsLen = 1024
)

// overridable are the settings a pod may change, each with the function
// that validates its value and applies it to the configuration.
var overridable = map[string]func(cfg *Config, value string) error{
	AnnotationVCPUs:        applyVCPUs,
	AnnotationMemoryMiB:    applyMemory,
	AnnotationKernelParams: applyKernelParams,
	AnnotationSnapshot:     applySnapshot,
	AnnotationConfidential: applyConfidential,
}

// protectedAnnotations name settings that decide what the VM is, where it
// keeps its state or what its attestation proves. A pod must never choose
// them, whatever enable_annotations says: they get their own error so the
// refusal is not mistaken for a typo.
var protectedAnnotations = []string{
	"io.scc.state_dir",
	"io.scc.guest_dir",
	"io.scc.enable_annotations",
	"io.scc.vm.qemu",
	"io.scc.vm.firmware",
	"io.scc.vm.kernel",
	"io.scc.vm.initrd",
	"io.scc.vm.accel",
	"io.scc.vm.log_dir",
	"io.scc.vm.boot_timeout",
	"io.scc.vm.tee",
	"io.scc.snapshot.dir",
	"io.scc.snapshot.auto_create",
}

// protectedPrefixes cover whole families of such settings.
var protectedPrefixes = []string{
	"io.scc.tee.",
	"io.scc.attest",
	"io.scc.vm.tee.",
	"io.scc.vm.confidential",
}

// deniedKernelParams are kernel parameters a pod may not add: they would
// replace the guest's init (the agent), change the agent's own settings,
// move the console the host logs, keep a crashed guest from exiting, or
// change the VM's memory and CPU layout behind the shim's back. Names are
// compared with '-' and '_' treated alike, as the kernel does.
var deniedKernelParams = []string{
	"init", "rdinit", "initrd", "root",
	"console", "earlyprintk", "earlycon",
	"panic", "reboot", "oops",
	"mem", "memmap", "nr_cpus", "maxcpus", "possible_cpus",
}

// deniedKernelParamPrefixes are prefixes of denied parameter names: scc.*
// are the agent's parameters (log level, hostname...).
var deniedKernelParamPrefixes = []string{"scc."}

// AnnotationPolicy is the administrator's allow-list of the io.scc.*
// annotations a pod may set (config.toml's enable_annotations).
type AnnotationPolicy struct {
	// Enable holds RE2 regular expressions, each matched against the whole
	// annotation name (it is anchored at both ends). A plain name such as
	// "io.scc.vm.vcpus" therefore enables that annotation; its unescaped
	// dots also match other characters, which is harmless because only
	// the documented annotations have any effect. `io\.scc\.vm\..*`
	// enables every io.scc.vm.* annotation. Empty: none is enabled.
	Enable []string
}

// compile returns the anchored expressions of the policy.
func (p AnnotationPolicy) compile() ([]*regexp.Regexp, error) {
	res := make([]*regexp.Regexp, 0, len(p.Enable))
	for _, e := range p.Enable {
		re, err := regexp.Compile(`^(?:` + e + `)$`)
		if err != nil {
			return nil, fmt.Errorf("enable_annotations: %q: %v: %w", e, err, errdefs.ErrInvalidArgument)
		}
		res = append(res, re)
	}
	return res, nil
}

// validate checks the expressions, so that a broken configuration is
// refused when it is loaded rather than when a pod first uses it.
func (p AnnotationPolicy) validate() error {
	_, err := p.compile()
	return err
}

// applyAnnotations applies a pod's io.scc.* annotations to the runtime
// configuration of its VM. It must be called on the configuration of the
// sandbox's VM before the VM starts; annotations outside io.scc.* are
// ignored. Every io.scc.* annotation must be a documented, overridable one
// (else ErrPermissionDenied for settings that are never overridable,
// ErrInvalidArgument for unknown ones), enabled by policy (else
// ErrPermissionDenied), with a valid value (else ErrInvalidArgument). All
// problems are reported together; on any error cfg is left unchanged.
func applyAnnotations(cfg *Config, policy AnnotationPolicy, annotations map[string]string) error {
	enabled, err := policy.compile()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, annotationPrefix) && !slices.Contains(sandboxIDAnnotations, k) && !slices.Contains(imageAnnotations, k) && k != AnnotationInitData {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	next := *cfg
	var errs []error
	for _, name := range names {
		if err := applyAnnotation(&next, enabled, name, annotations[name]); err != nil {
			errs = append(errs, fmt.Errorf("annotation %s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	*cfg = next
	return nil
}

func applyAnnotation(cfg *Config, enabled []*regexp.Regexp, name, value string) error {
	if isProtectedAnnotation(name) {
		return fmt.Errorf("it would change the VM's isolation or attestation, which a pod can never override: %w", errdefs.ErrPermissionDenied)
	}
	apply, ok := overridable[name]
	if !ok {
		return fmt.Errorf("unknown scc annotation (the overridable ones are %s): %w", strings.Join(overridableNames(), ", "), errdefs.ErrInvalidArgument)
	}
	if !slices.ContainsFunc(enabled, func(re *regexp.Regexp) bool { return re.MatchString(name) }) {
		return fmt.Errorf("not enabled by the runtime's enable_annotations: %w", errdefs.ErrPermissionDenied)
	}
	return apply(cfg, value)
}

func isProtectedAnnotation(name string) bool {
	if slices.Contains(protectedAnnotations, name) {
		return true
	}
	return slices.ContainsFunc(protectedPrefixes, func(p string) bool { return strings.HasPrefix(name, p) })
}

func overridableNames() []string {
	names := make([]string, 0, len(overridable))
	for n := range overridable {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func applyVCPUs(cfg *Config, value string) error {
	n, err := parseBounded(value, minAnnotationVCPUs, maxAnnotationVCPUs)
	if err != nil {
		return err
	}
	cfg.VM.VCPUs = n
	return nil
}

func applyMemory(cfg *Config, value string) error {
	n, err := parseBounded(value, minAnnotationMemoryMiB, maxAnnotationMemoryMiB)
	if err != nil {
		return err
	}
	cfg.VM.MemoryMiB = n
	return nil
}

// parseBounded parses a decimal integer without sign in [lo, hi].
func parseBounded(value string, lo, hi int) (int, error) {
	n, err := strconv.ParseUint(value, 10, 32)
	if err != nil || int(n) < lo || int(n) > hi {
		return 0, fmt.Errorf("%q is not an integer from %d to %d: %w", value, lo, hi, errdefs.ErrInvalidArgument)
	}
	return int(n), nil
}

func applyKernelParams(cfg *Config, value string) error {
	if len(value) > maxKernelParamsLen {
		return fmt.Errorf("longer than %d bytes: %w", maxKernelParamsLen, errdefs.ErrInvalidArgument)
	}
	for _, r := range value {
		// Only printable ASCII and plain spaces: a control character
		// (newline, NUL...) or a tab could split or end the command line.
		if r != ' ' && (r < 0x21 || r > 0x7e) {
			return fmt.Errorf("character %q not allowed in kernel parameters: %w", r, errdefs.ErrInvalidArgument)
		}
	}
	params := strings.Fields(value)
	for _, p := range params {
		if err := checkKernelParam(p); err != nil {
			return err
		}
	}
	// A new slice: cfg shares its backing array with the caller's copy.
	cfg.VM.ExtraArgs = slices.Concat(cfg.VM.ExtraArgs, params)
	return nil
}

func checkKernelParam(p string) error {
	if p == "--" {
		// Everything after it would become arguments of the guest's init.
		return fmt.Errorf(`kernel parameter "--" not allowed: %w`, errdefs.ErrInvalidArgument)
	}
	if strings.Contains(p, `"`) {
		// Quotes let one parameter swallow the ones after it.
		return fmt.Errorf("kernel parameter %q: quotes not allowed: %w", p, errdefs.ErrInvalidArgument)
	}
	name, _, _ := strings.Cut(p, "=")
	norm := strings.ReplaceAll(name, "-", "_")
	denied := slices.ContainsFunc(deniedKernelParams, func(d string) bool { return strings.ReplaceAll(d, "-", "_") == norm })
	denied = denied || slices.ContainsFunc(deniedKernelParamPrefixes, func(d string) bool { return strings.HasPrefix(norm, d) })
	if denied {
		return fmt.Errorf("kernel parameter %q not allowed: %w", name, errdefs.ErrPermissionDenied)
	}
	return nil
}

func applySnapshot(cfg *Config, value string) error {
	on, err := strconv.ParseBool(value)
	if err != nil {
		return fmt.Errorf("%q is not true or false: %w", value, errdefs.ErrInvalidArgument)
	}
	if on && !cfg.Snapshot.Enabled {
		return fmt.Errorf("VM templates are off in the runtime configuration; a pod cannot turn them on: %w", errdefs.ErrPermissionDenied)
	}
	cfg.Snapshot.Enabled = on
	return nil
}

func applyConfidential(cfg *Config, value string) error {
	on, err := strconv.ParseBool(value)
	if err != nil {
		return fmt.Errorf("%q is not true or false: %w", value, errdefs.ErrInvalidArgument)
	}
	if !on && cfg.Confidential.Enabled {
		return fmt.Errorf("the runtime configuration makes every container confidential; a pod cannot opt out: %w", errdefs.ErrPermissionDenied)
	}
	cfg.Confidential.Enabled = on
	return nil
}
