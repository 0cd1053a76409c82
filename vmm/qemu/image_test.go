package qemu

import (
	"bytes"
	"encoding/base64"
	"slices"
	"testing"

	snpmeasure "github.com/sccontainers/scc/attest/snp/measure"
	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/confidential"
	"github.com/sccontainers/scc/vmm/image"
	"github.com/sccontainers/scc/vmm/image/imagetest"
	"github.com/sccontainers/scc/vmm/vmmtest"
)

// Firmware images of the measurement packages' tests: an SEV build of OVMF
// (its last 64 KiB, the part the launch digest needs) and Debian's OVMF,
// which carries TDX metadata.
const (
	sevOVMFFixture = "../../attest/snp/measure/testdata/fixtures/ovmf_AmdSev_suffix.bin"
	tdvfFixture    = "../../attest/tdx/measure/testdata/debian-ovmf-2022.11-6+deb12u2.fd"
)

// The base64 of the zero HOST_DATA and MRCONFIGID of a launch that sets
// none.
var (
	zeroHostData   = base64.StdEncoding.EncodeToString(make([]byte, 32))
	zeroMRConfigID = base64.StdEncoding.EncodeToString(make([]byte, 48))
)

// writeGuestImage writes a guest image of stand-in files and loads it.
func writeGuestImage(t *testing.T) *image.Manifest {
	t.Helper()
	m, err := imagetest.Write(t.TempDir(), []byte("initrd"), "console=ttyS0 quiet")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// kernelArg returns the -kernel argument of a command line.
func kernelArg(args []string) string {
	if i := slices.Index(args, "-kernel"); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// A VM configured from the guest image boots the kernel its firmware can
// start: confidential VMs and ordinary VMs with OVMF get the bzImage,
// ordinary VMs with qboot the PVH vmlinux. The configurations pass the
// driver's checks, and the golden command lines of the confidential ones
// name the bzImage.
func TestArgsFromGuestImage(t *testing.T) {
	m := writeGuestImage(t)
	ovmf, qboot, err := vmmtest.WriteFirmware(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	vm := func(accel vmm.Accel, firmware string, tee *vmm.TEEConfig) vmm.Config {
		return vmm.Config{ID: "c1", StateDir: stateDir, Firmware: firmware, Accel: accel, TEE: tee}
	}
	tail := func(kernel string) []string {
		return []string{"-kernel", kernel, "-initrd", m.Initrd.Path, "-append", m.Cmdline,
			"-nodefaults", "-no-user-config", "-nographic", "-display", "none", "-no-reboot",
			"-serial", "file:" + stateDir + "/console.log",
			"-qmp", "unix:" + stateDir + "/qmp.sock,server=on,wait=off",
			"-pidfile", stateDir + "/qemu.pid",
			"-device", "virtio-serial-pci,id=vser0",
			"-chardev", "socket,id=agent,path=" + stateDir + "/agent.sock,server=on,wait=off",
			"-device", "virtserialport,bus=vser0.0,chardev=agent,id=agentport,name=io.scc.agent",
			"-device", "virtio-rng-pci"}
	}
	tests := []struct {
		name   string
		cfg    vmm.Config
		qemu   string
		kernel string
		want   []string // the whole command line; nil to check -kernel only
	}{
		{name: "qboot", cfg: vm(vmm.AccelTCG, qboot, nil), qemu: "7.2.22", kernel: m.Kernel.Path},
		{name: "ovmf", cfg: vm(vmm.AccelTCG, ovmf, nil), qemu: "7.2.22", kernel: m.EFIKernel.Path},
		{
			name: "snp", qemu: "9.1.0", kernel: m.EFIKernel.Path,
			cfg: vm(vmm.AccelKVM, "", &vmm.TEEConfig{Type: vmm.TEESNP, Firmware: sevOVMFFixture,
				SNP: vmm.SNPConfig{KernelHashes: true, CBitPos: 51, ReducedPhysBits: 1}}),
			want: append([]string{"-name", "scc-c1",
				"-M", "q35,accel=kvm,confidential-guest-support=sev0,memory-backend=ram1",
				"-cpu", "EPYC-v4", "-smp", "1", "-m", "512",
				"-object", "memory-backend-memfd,id=ram1,size=512M,share=true,prealloc=false",
				"-object", "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on,host-data=" + zeroHostData,
				"-bios", sevOVMFFixture}, tail(m.EFIKernel.Path)...),
		},
		{
			name: "tdx", qemu: "10.1.0", kernel: m.EFIKernel.Path,
			cfg: vm(vmm.AccelKVM, "", &vmm.TEEConfig{Type: vmm.TEETDX, Firmware: tdvfFixture}),
			want: append([]string{"-name", "scc-c1",
				"-M", "q35,accel=kvm,kernel-irqchip=split,confidential-guest-support=tdx0,memory-backend=ram1",
				"-cpu", "host", "-smp", "1", "-m", "512",
				"-object", "memory-backend-memfd,id=ram1,size=512M,share=true,prealloc=false",
				"-object", "tdx-guest,id=tdx0,sept-ve-disable=on,mrconfigid=" + zeroMRConfigID,
				"-bios", tdvfFixture}, tail(m.EFIKernel.Path)...),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if err := m.Configure(&cfg); err != nil {
				t.Fatal(err)
			}
			v, err := Driver{Binary: fakeVersionQEMU(t, tt.qemu), SEVHost: milan}.NewVM(cfg)
			if err != nil {
				t.Fatalf("NewVM: %v", err)
			}
			args, err := Args(v.Config())
			if err != nil {
				t.Fatal(err)
			}
			if got := kernelArg(args); got != tt.kernel {
				t.Errorf("-kernel %s, want %s", got, tt.kernel)
			}
			if tt.want != nil && !slices.Equal(args, tt.want) {
				t.Errorf("Args() =\n  %q\nwant\n  %q", args, tt.want)
			}
		})
	}
}

// The SNP launch digest is computed over the very file the command line
// hands QEMU: the SEV hashes table holds the SHA-256 of the -kernel file.
func TestSNPDigestCoversTheKernelArgument(t *testing.T) {
	m := writeGuestImage(t)
	cfg := vmm.Config{ID: "c1", StateDir: t.TempDir(), Accel: vmm.AccelKVM, TEE: &vmm.TEEConfig{
		Type: vmm.TEESNP, Firmware: sevOVMFFixture, SNP: vmm.SNPConfig{KernelHashes: true, CBitPos: 51, ReducedPhysBits: 1},
	}}
	if err := m.Configure(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg = cfg.WithDefaults()
	args, err := Args(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := confidential.ExpectedSNPDigest(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := snpmeasure.LaunchDigest(snpmeasure.Options{
		Mode: snpmeasure.ModeSNP, VCPUs: 1, VCPUType: vmm.DefaultSNPVCPUType, VMMType: snpmeasure.VMMQEMU,
		OVMFPath: sevOVMFFixture, GuestFeatures: vmm.SEVFeatureSNPActive,
		DirectBoot: &snpmeasure.DirectBoot{KernelPath: kernelArg(args), InitrdPath: m.Initrd.Path, Cmdline: m.Cmdline},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("ExpectedSNPDigest = %x, the digest over -kernel %s is %x", got, kernelArg(args), want)
	}
}
