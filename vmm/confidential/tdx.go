package confidential

import (
	"fmt"
	"os"

	"github.com/sccontainers/scc/attest/tdx/measure"
	"github.com/sccontainers/scc/vmm"
)

// TDXHost describes what of a TDX host changes a TD's measurements
// without showing on QEMU's command line. The zero value is the upstream
// stack scc's QEMU path targets: QEMU 10.1 or newer on Linux 6.16 or newer,
// with a TDVF built from edk2 up to stable202505.
type TDXHost struct {
	// PageOrder is the order in which the host kernel adds and measures
	// the firmware's pages.
	PageOrder measure.PageOrder
	// InitrdArg is where the firmware puts the initrd argument in the
	// kernel's load options.
	InitrdArg measure.InitrdArg
}

// TDXMeasurements are the reference values of a TD that can be computed on
// the host. RTMR[0] and RTMR[1] are not among them: they hold QEMU's ACPI
// tables and memory map, the kernel image (with its setup header patched
// by QEMU 10.1) and the firmware's boot events, which a verifier checks by
// replaying the CC event log.
type TDXMeasurements struct {
	// MRTD is the measurement of the firmware's initial pages.
	MRTD []byte
	// RTMR2 is RTMR[2] once the kernel's EFI stub has measured its load
	// options and the initrd (Linux 6.9 or newer, which measures into TDX
	// RTMRs); nil when the VM boots no kernel directly.
	RTMR2 []byte
	// MRConfigID is the launch's MRCONFIGID (vmm.TDXConfig.MRConfigID),
	// reported verbatim.
	MRConfigID []byte
}

// ExpectedTDXMeasurements returns the TDX measurements of the VM cfg
// describes when QEMU launches it as a TD on host: MRTD from the TDVF
// image, RTMR[2] from cfg's command line and initrd, and MRCONFIGID. A key
// broker's reference values computed from them hold for exactly the
// firmware and guest image the shim boots.
//
// tdvf is the firmware image; when nil, the file cfg.TEE.Firmware names is
// read. Defaults are applied to cfg first, as a driver does.
func ExpectedTDXMeasurements(cfg vmm.Config, tdvf []byte, host TDXHost) (TDXMeasurements, error) {
	cfg = cfg.WithDefaults()
	tee := cfg.TEE
	if tee == nil || tee.Type != vmm.TEETDX {
		return TDXMeasurements{}, fmt.Errorf("expected tdx measurements: %w: vm is not a TDX guest", ErrNotMeasurable)
	}
	if tdvf == nil {
		var err error
		if tdvf, err = os.ReadFile(tee.Firmware); err != nil {
			return TDXMeasurements{}, fmt.Errorf("expected tdx measurements: read firmware: %w", err)
		}
	}
	fw, err := measure.ParseTDVF(tdvf)
	if err != nil {
		return TDXMeasurements{}, fmt.Errorf("expected tdx measurements: %w", err)
	}
	mrtd, err := fw.MRTD(host.PageOrder)
	if err != nil {
		return TDXMeasurements{}, fmt.Errorf("expected tdx measurements: %w", err)
	}
	m := TDXMeasurements{MRTD: mrtd, MRConfigID: tee.TDX.MRConfigID[:]}
	if cfg.Kernel != "" {
		// RTMR[2] is the EFI stub's doing: the kernel must have one.
		if err := checkKernel(cfg.Kernel); err != nil {
			return TDXMeasurements{}, fmt.Errorf("expected tdx measurements: %w", err)
		}
		b := measure.DirectBoot{Cmdline: cfg.Cmdline, InitrdArg: host.InitrdArg}
		if cfg.Initrd != "" {
			f, err := os.Open(cfg.Initrd)
			if err != nil {
				return TDXMeasurements{}, fmt.Errorf("expected tdx measurements: %w", err)
			}
			defer f.Close()
			b.Initrd = f
		}
		if m.RTMR2, err = measure.DirectBootRTMR2(b); err != nil {
			return TDXMeasurements{}, fmt.Errorf("expected tdx measurements: %w", err)
		}
	}
	return m, nil
}
