package qemu

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"time"

	"github.com/sccontainers/scc/vmm"
)

// TooOldError reports a QEMU binary that predates a feature the
// configuration needs.
type TooOldError struct {
	Have, Need Version
	Feature    string // "SEV-SNP", "TDX", ...
}

func (e *TooOldError) Error() string {
	return fmt.Sprintf("QEMU %s is too old for %s: need %d.%d or newer", e.Have, e.Feature, e.Need.Major, e.Need.Minor)
}

// versionTimeout bounds `qemu-system-x86_64 --version`.
const versionTimeout = 10 * time.Second

// Version is a QEMU release number.
type Version struct{ Major, Minor, Micro int }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro) }

// Less reports whether v is an older release than w.
func (v Version) Less(w Version) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	return v.Micro < w.Micro
}

// Releases that brought the confidential guest objects upstream.
var (
	MinVersionSNP  = Version{9, 1, 0}  // sev-snp-guest
	MinVersionTDX  = Version{10, 1, 0} // tdx-guest
	MinVersionIGVM = Version{10, 1, 0} // igvm-cfg
)

var versionLine = regexp.MustCompile(`(?m)^QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?`)

// ParseVersion reads the release from `qemu-system-x86_64 --version` output,
// such as "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)".
func ParseVersion(out string) (Version, error) {
	m := versionLine.FindStringSubmatch(out)
	if m == nil {
		return Version{}, fmt.Errorf("parse qemu version: no \"QEMU emulator version\" line in %q", out)
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	if m[3] != "" {
		v.Micro, _ = strconv.Atoi(m[3])
	}
	return v, nil
}

// BinaryVersion runs bin --version and parses its answer.
func BinaryVersion(ctx context.Context, bin string) (Version, error) {
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return Version{}, fmt.Errorf("run %s --version: %w", bin, err)
	}
	return ParseVersion(string(out))
}

// CheckVersion returns a *TooOldError when a QEMU of version v cannot
// launch the TEE tee describes.
func CheckVersion(v Version, tee *vmm.TEEConfig) error {
	if !tee.Confidential() {
		return nil
	}
	need := func(min Version, what string) error {
		if v.Less(min) {
			return &TooOldError{Have: v, Need: min, Feature: what}
		}
		return nil
	}
	switch tee.Type {
	case vmm.TEESNP:
		if tee.SNP.IGVM != "" {
			return need(MinVersionIGVM, "IGVM firmware")
		}
		return need(MinVersionSNP, "SEV-SNP")
	case vmm.TEETDX:
		return need(MinVersionTDX, "TDX")
	}
	return nil
}
