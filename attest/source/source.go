// Package source picks, inside the guest, where attestation evidence comes
// from: the SEV-SNP or TDX guest interface, a vTPM, or, only when the
// caller explicitly asks for it, the simulated TEE.
//
// Detect looks, in order, for:
//
//  1. configfs-tsm (/sys/kernel/config/tsm/report), the kernel's
//     vendor-neutral report interface, whose provider says sev_guest or
//     tdx_guest. configfs must be mounted at /sys/kernel/config.
//  2. /dev/sev-guest (SEV-SNP guest driver, older kernels).
//  3. /dev/tdx_guest (TDX guest driver, older kernels).
//  4. /dev/tpmrm0, then /dev/tpm0 (a vTPM).
//  5. The simulated TEE, if Detector.AllowSim is set (for example because
//     the kernel command line says scc.tee=sim; see SimRequested).
//
// A hardware TEE always wins over the simulation, so a flag left on by
// mistake cannot downgrade a real confidential guest.
package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Kind names an evidence source; it is the TEE name the agent logs and
// sends to the key broker.
type Kind string

const (
	SNP  Kind = "snp"
	TDX  Kind = "tdx"
	VTPM Kind = "vtpm"
	Sim  Kind = "sim"
)

// Interfaces through which evidence is obtained.
const (
	InterfaceTSM       = "configfs-tsm"
	InterfaceSEVGuest  = "sev-guest"
	InterfaceTDXGuest  = "tdx-guest"
	InterfaceTPM       = "tpm"
	InterfaceSimulated = "simulated"
)

// Paths Detect looks at, relative to Detector.Root.
const (
	TSMReportDir = "/sys/kernel/config/tsm/report"
	ConfigFSDir  = "/sys/kernel/config"
	SEVGuestDev  = "/dev/sev-guest"
	TDXGuestDev  = "/dev/tdx_guest"
	TPMRMDev     = "/dev/tpmrm0"
	TPMDev       = "/dev/tpm0"
)

// TSM providers (the provider attribute of a configfs-tsm report entry).
const (
	providerSEV = "sev_guest"
	providerTDX = "tdx_guest"
)

// ErrNoSource means the guest has no usable evidence source.
var ErrNoSource = errors.New("no attestation evidence source")

// Source is the evidence source Detect chose.
type Source struct {
	Kind      Kind
	Interface string // one of the Interface constants
	// Path is the configfs-tsm report directory or the device to open,
	// as seen by the guest (without Detector.Root); empty for Sim.
	Path string
}

// Name is the TEE name: "snp", "tdx", "vtpm" or "sim".
func (s Source) Name() string { return string(s.Kind) }

func (s Source) String() string {
	if s.Path == "" {
		return fmt.Sprintf("%s (%s)", s.Kind, s.Interface)
	}
	return fmt.Sprintf("%s (%s at %s)", s.Kind, s.Interface, s.Path)
}

// Detector finds the evidence source of the guest it runs in.
type Detector struct {
	// Root is prepended to every path looked at; "" means "/". Tests
	// point it at a fake tree.
	Root string
	// AllowSim lets Detect fall back to the simulated TEE when no
	// hardware source exists. Set it only on an explicit request.
	AllowSim bool
}

// Detect is Detector{}.Detect: hardware sources only.
func Detect(ctx context.Context) (Source, error) { return Detector{}.Detect(ctx) }

// Detect returns the first source present, in the order the package
// documentation gives, or an error wrapping ErrNoSource that says what was
// looked for.
func (d Detector) Detect(ctx context.Context) (Source, error) {
	if err := ctx.Err(); err != nil {
		return Source{}, fmt.Errorf("detect evidence source: %w", err)
	}
	var notes []string

	kind, note := d.tsmProvider()
	if kind != "" {
		return Source{Kind: kind, Interface: InterfaceTSM, Path: TSMReportDir}, nil
	}
	notes = append(notes, note)

	for _, dev := range []struct {
		path  string
		kind  Kind
		iface string
	}{
		{SEVGuestDev, SNP, InterfaceSEVGuest},
		{TDXGuestDev, TDX, InterfaceTDXGuest},
		{TPMRMDev, VTPM, InterfaceTPM},
		{TPMDev, VTPM, InterfaceTPM},
	} {
		fi, err := os.Stat(d.path(dev.path))
		if err == nil && !fi.IsDir() {
			return Source{Kind: dev.kind, Interface: dev.iface, Path: dev.path}, nil
		}
		notes = append(notes, "no "+dev.path)
	}

	if d.AllowSim {
		return Source{Kind: Sim, Interface: InterfaceSimulated}, nil
	}
	notes = append(notes, "simulated TEE not enabled")
	return Source{}, fmt.Errorf("%w: %s", ErrNoSource, strings.Join(notes, "; "))
}

func (d Detector) path(p string) string {
	if d.Root == "" {
		return p
	}
	return filepath.Join(d.Root, p)
}

// tsmProvider returns the TEE behind configfs-tsm, or "" and why not.
// The provider is an attribute of a report entry: an existing entry is
// read if there is one, otherwise a probe entry is made and removed.
func (d Detector) tsmProvider() (Kind, string) {
	dir := d.path(TSMReportDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if _, cerr := os.Stat(d.path(ConfigFSDir)); cerr == nil && isEmptyDir(d.path(ConfigFSDir)) {
			return "", "no " + TSMReportDir + " (configfs is not mounted at " + ConfigFSDir + ")"
		}
		return "", "no " + TSMReportDir
	}
	var provider string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, e.Name(), "provider")); err == nil {
			provider = strings.TrimSpace(string(b))
			break
		}
	}
	if provider == "" {
		provider, err = probeProvider(dir)
		if err != nil {
			return "", fmt.Sprintf("%s present but its provider is unreadable: %v", TSMReportDir, err)
		}
	}
	switch provider {
	case providerSEV:
		return SNP, ""
	case providerTDX:
		return TDX, ""
	}
	return "", fmt.Sprintf("%s provider %q is neither %s nor %s", TSMReportDir, provider, providerSEV, providerTDX)
}

// probeEntry makes a report entry in dir; a variable so that tests can
// stand in for configfs, which fills the entry with attributes.
var probeEntry = func(path string) error { return os.Mkdir(path, 0o700) }

// probeProvider makes a temporary report entry, reads its provider and
// removes it again.
func probeProvider(dir string) (string, error) {
	entry := filepath.Join(dir, "scc-probe-"+strconv.Itoa(os.Getpid()))
	if err := probeEntry(entry); err != nil {
		return "", err
	}
	defer os.Remove(entry)
	b, err := os.ReadFile(filepath.Join(entry, "provider"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func isEmptyDir(path string) bool {
	entries, err := os.ReadDir(path)
	return err == nil && len(entries) == 0
}

// SimCmdlineKey is the kernel command line parameter that asks for the
// simulated TEE: scc.tee=sim.
const SimCmdlineKey = "scc.tee"

// SimRequested reports whether the kernel command line cmdline (the
// contents of /proc/cmdline) asks for the simulated TEE with scc.tee=sim.
// The last scc.tee= wins, as the kernel's own parameters do.
func SimRequested(cmdline string) bool {
	sim := false
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, SimCmdlineKey+"="); ok {
			sim = v == string(Sim)
		}
	}
	return sim
}
