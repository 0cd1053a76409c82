package qemu

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/confidential"
	"github.com/sccontainers/scc/vmm/vmmtest"
)

const (
	testOVMF = "/usr/share/ovmf/OVMF.amdsev.fd"
	testTDVF = "/usr/share/ovmf/OVMF.inteltdx.fd"
)

// hostData is 0x01..0x20, whose base64 the golden lines spell out.
var hostData = func() (h [32]byte) {
	for i := range h {
		h[i] = byte(i + 1)
	}
	return h
}()

const hostDataB64 = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="

// efiKernel is the guest image's bzImage, which confidential VMs boot.
const efiKernel = "/var/lib/scc/guest/vmlinuz"

func snpBase() vmm.Config {
	c := baseConfig()
	c.Kernel = efiKernel
	c.Accel = vmm.AccelKVM
	c.Firmware = ""
	c.TEE = &vmm.TEEConfig{
		Type:     vmm.TEESNP,
		Firmware: testOVMF,
		SNP:      vmm.SNPConfig{KernelHashes: true, HostData: hostData, CBitPos: 51, ReducedPhysBits: 1},
	}
	return c.WithDefaults()
}

func tdxBase() vmm.Config {
	c := baseConfig()
	c.Kernel = efiKernel
	c.Accel = vmm.AccelKVM
	c.Firmware = ""
	var id [48]byte
	copy(id[:], bytes.Repeat([]byte{0xab}, 48))
	c.TEE = &vmm.TEEConfig{Type: vmm.TEETDX, Firmware: testTDVF, TDX: vmm.TDXConfig{MRConfigID: id}}
	return c.WithDefaults()
}

// guestArgs is the part of every command line after the firmware and the
// kernel: initrd, devices and control sockets of baseConfig.
var guestArgs = []string{
	"-initrd", "/var/lib/scc/guest/initrd.img",
	"-append", "console=ttyS0 panic=-1 quiet",
	"-nodefaults", "-no-user-config", "-nographic", "-display", "none", "-no-reboot",
	"-serial", "file:/run/scc/c1/console.log",
	"-qmp", "unix:/run/scc/c1/qmp.sock,server=on,wait=off",
	"-pidfile", "/run/scc/c1/qemu.pid",
	"-device", "virtio-serial-pci,id=vser0",
	"-chardev", "socket,id=agent,path=/run/scc/c1/agent.sock,server=on,wait=off",
	"-device", "virtserialport,bus=vser0.0,chardev=agent,id=agentport,name=io.scc.agent",
	"-device", "virtio-rng-pci",
}

// line is the command line of an ordinary VM, booting the PVH vmlinux.
func line(head ...string) []string {
	return append(append(head, "-kernel", "/var/lib/scc/guest/vmlinux"), guestArgs...)
}

// teeLine is the command line of a confidential VM, booting the bzImage.
func teeLine(head ...string) []string {
	return append(append(head, "-kernel", efiKernel), guestArgs...)
}

func TestArgsGolden(t *testing.T) {
	zeroBlock := base64.StdEncoding.EncodeToString(make([]byte, vmm.SNPIDBlockSize))
	zeroAuth := base64.StdEncoding.EncodeToString(make([]byte, vmm.SNPIDAuthSize))
	authorAuth := make([]byte, vmm.SNPIDAuthSize)
	authorAuth[4] = 1 // AUTHOR_KEY_ALGO: ECDSA P-384
	authorAuthB64 := base64.StdEncoding.EncodeToString(authorAuth)
	mrconfigid := strings.Repeat("q6ur", 16) // 48 bytes of 0xab

	tests := []struct {
		name string
		cfg  func() vmm.Config
		want []string
	}{
		{
			name: "plain tcg",
			cfg:  baseConfig,
			want: line("-name", "scc-c1", "-M", "q35,accel=tcg", "-cpu", "max", "-smp", "1", "-m", "512",
				"-bios", "/usr/share/qemu/qboot.rom"),
		},
		{
			name: "plain kvm",
			cfg:  func() vmm.Config { c := baseConfig(); c.Accel = vmm.AccelKVM; return c },
			want: line("-name", "scc-c1", "-M", "q35,accel=kvm", "-cpu", "host", "-smp", "1", "-m", "512",
				"-bios", "/usr/share/qemu/qboot.rom"),
		},
		{
			name: "snp",
			cfg:  snpBase,
			want: teeLine("-name", "scc-c1",
				"-M", "q35,accel=kvm,confidential-guest-support=sev0,memory-backend=ram1",
				"-cpu", "EPYC-v4", "-smp", "1", "-m", "512",
				"-object", "memory-backend-memfd,id=ram1,size=512M,share=true,prealloc=false",
				"-object", "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on,host-data="+hostDataB64,
				"-bios", testOVMF),
		},
		{
			name: "snp with id block, 4 vcpus, 2 GiB, single-socket policy, milan",
			cfg: func() vmm.Config {
				c := snpBase()
				c.VCPUs, c.MemoryMiB = 4, 2048
				c.TEE.SNP.Policy = vmm.DefaultSNPPolicy | vmm.SNPPolicySingleSocket
				c.TEE.SNP.VCPUType = "EPYC-Milan"
				c.TEE.SNP.CBitPos, c.TEE.SNP.ReducedPhysBits = 47, 5
				c.TEE.SNP.IDBlock, c.TEE.SNP.IDAuth = zeroBlock, zeroAuth
				return c
			},
			want: teeLine("-name", "scc-c1",
				"-M", "q35,accel=kvm,confidential-guest-support=sev0,memory-backend=ram1",
				"-cpu", "EPYC-Milan", "-smp", "4", "-m", "2048",
				"-object", "memory-backend-memfd,id=ram1,size=2048M,share=true,prealloc=false",
				"-object", "sev-snp-guest,id=sev0,cbitpos=47,reduced-phys-bits=5,policy=0x130000,kernel-hashes=on,host-data="+hostDataB64+
					",id-block="+zeroBlock+",id-auth="+zeroAuth,
				"-bios", testOVMF),
		},
		{
			name: "snp with id block signed by an author key",
			cfg: func() vmm.Config {
				c := snpBase()
				c.TEE.SNP.IDBlock, c.TEE.SNP.IDAuth = zeroBlock, authorAuthB64
				return c
			},
			want: teeLine("-name", "scc-c1",
				"-M", "q35,accel=kvm,confidential-guest-support=sev0,memory-backend=ram1",
				"-cpu", "EPYC-v4", "-smp", "1", "-m", "512",
				"-object", "memory-backend-memfd,id=ram1,size=512M,share=true,prealloc=false",
				"-object", "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on,host-data="+hostDataB64+
					",id-block="+zeroBlock+",id-auth="+authorAuthB64+",author-key-enabled=on",
				"-bios", testOVMF),
		},
		{
			name: "snp from igvm",
			cfg: func() vmm.Config {
				c := snpBase()
				c.TEE.Firmware, c.TEE.SNP.IGVM, c.TEE.SNP.KernelHashes = "", "/usr/share/igvm/coconut-qemu.igvm", false
				return c
			},
			want: teeLine("-name", "scc-c1",
				"-M", "q35,accel=kvm,confidential-guest-support=sev0,memory-backend=ram1,igvm-cfg=igvm0",
				"-cpu", "EPYC-v4", "-smp", "1", "-m", "512",
				"-object", "memory-backend-memfd,id=ram1,size=512M,share=true,prealloc=false",
				"-object", "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,host-data="+hostDataB64,
				"-object", "igvm-cfg,id=igvm0,file=/usr/share/igvm/coconut-qemu.igvm"),
		},
		{
			name: "tdx",
			cfg:  tdxBase,
			want: teeLine("-name", "scc-c1",
				"-M", "q35,accel=kvm,kernel-irqchip=split,confidential-guest-support=tdx0,memory-backend=ram1",
				"-cpu", "host", "-smp", "1", "-m", "512",
				"-object", "memory-backend-memfd,id=ram1,size=512M,share=true,prealloc=false",
				"-object", "tdx-guest,id=tdx0,sept-ve-disable=on,mrconfigid="+mrconfigid,
				"-bios", testTDVF),
		},
		{
			name: "tdx with a vsock quote generation service",
			cfg: func() vmm.Config {
				c := tdxBase()
				c.TEE.TDX.QuoteGenerationSocket = "vsock:2:4050"
				return c
			},
			want: teeLine("-name", "scc-c1",
				"-M", "q35,accel=kvm,kernel-irqchip=split,confidential-guest-support=tdx0,memory-backend=ram1",
				"-cpu", "host", "-smp", "1", "-m", "512",
				"-object", "memory-backend-memfd,id=ram1,size=512M,share=true,prealloc=false",
				"-object", `{"qom-type":"tdx-guest","id":"tdx0","sept-ve-disable":true,"mrconfigid":"`+mrconfigid+`","quote-generation-socket":{"cid":"2","port":"4050","type":"vsock"}}`,
				"-bios", testTDVF),
		},
		{
			name: "tdx with a unix quote generation service",
			cfg: func() vmm.Config {
				c := tdxBase()
				c.TEE.TDX.QuoteGenerationSocket = "unix:/var/run/tdx-qgs/qgs.socket"
				return c
			},
			want: teeLine("-name", "scc-c1",
				"-M", "q35,accel=kvm,kernel-irqchip=split,confidential-guest-support=tdx0,memory-backend=ram1",
				"-cpu", "host", "-smp", "1", "-m", "512",
				"-object", "memory-backend-memfd,id=ram1,size=512M,share=true,prealloc=false",
				"-object", `{"qom-type":"tdx-guest","id":"tdx0","sept-ve-disable":true,"mrconfigid":"`+mrconfigid+`","quote-generation-socket":{"path":"/var/run/tdx-qgs/qgs.socket","type":"unix"}}`,
				"-bios", testTDVF),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Args(tt.cfg())
			if err != nil {
				t.Fatalf("Args: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Args() =\n  %q\nwant\n  %q", got, tt.want)
			}
		})
	}
}

func TestArgsTEEUnresolved(t *testing.T) {
	tests := []struct {
		name string
		cfg  func() vmm.Config
	}{
		{"snp under tcg", func() vmm.Config { c := snpBase(); c.Accel = vmm.AccelTCG; return c }},
		{"tdx under tcg", func() vmm.Config { c := tdxBase(); c.Accel = vmm.AccelTCG; return c }},
		{"snp without c-bit", func() vmm.Config { c := snpBase(); c.TEE.SNP.CBitPos, c.TEE.SNP.ReducedPhysBits = 0, 0; return c }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := Args(tt.cfg()); err == nil {
				t.Errorf("Args() = %q, want error", got)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		out  string
		want Version
		bad  bool
	}{
		{out: "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n", want: Version{7, 2, 22}},
		{out: "QEMU emulator version 9.1.0\n", want: Version{9, 1, 0}},
		{out: "QEMU emulator version 10.1.50 (v10.1.0-1234-gdeadbeef)\n", want: Version{10, 1, 50}},
		{out: "QEMU emulator version 8.2\n", want: Version{8, 2, 0}},
		{out: "qemu-kvm: unknown option\n", bad: true},
		{out: "", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseVersion(tt.out)
		if tt.bad != (err != nil) || got != tt.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v (error: %v)", tt.out, got, err, tt.want, tt.bad)
		}
	}
}

func TestCheckVersion(t *testing.T) {
	snp := &vmm.TEEConfig{Type: vmm.TEESNP}
	igvm := &vmm.TEEConfig{Type: vmm.TEESNP, SNP: vmm.SNPConfig{IGVM: "/f.igvm"}}
	tdx := &vmm.TEEConfig{Type: vmm.TEETDX}
	tests := []struct {
		v    Version
		tee  *vmm.TEEConfig
		want string // "" for no error
	}{
		{Version{7, 2, 22}, nil, ""},
		{Version{7, 2, 22}, &vmm.TEEConfig{Type: vmm.TEENone}, ""},
		{Version{7, 2, 22}, snp, "QEMU 7.2.22 is too old for SEV-SNP: need 9.1 or newer"},
		{Version{9, 0, 9}, snp, "QEMU 9.0.9 is too old for SEV-SNP: need 9.1 or newer"},
		{Version{9, 1, 0}, snp, ""},
		{Version{10, 0, 0}, snp, ""},
		{Version{10, 0, 2}, igvm, "QEMU 10.0.2 is too old for IGVM firmware: need 10.1 or newer"},
		{Version{10, 1, 0}, igvm, ""},
		{Version{9, 2, 0}, tdx, "QEMU 9.2.0 is too old for TDX: need 10.1 or newer"},
		{Version{10, 1, 0}, tdx, ""},
		{Version{11, 0, 0}, tdx, ""},
	}
	for _, tt := range tests {
		err := CheckVersion(tt.v, tt.tee)
		var got string
		if err != nil {
			got = err.Error()
			var old *TooOldError
			if !errors.As(err, &old) || old.Have != tt.v {
				t.Errorf("CheckVersion(%v) = %v, want a *TooOldError for %v", tt.v, err, tt.v)
			}
		}
		if got != tt.want {
			t.Errorf("CheckVersion(%v, %+v) = %q, want %q", tt.v, tt.tee, got, tt.want)
		}
	}
}

// fakeVersionQEMU writes a program that answers --version as QEMU ver.
func fakeVersionQEMU(t *testing.T, ver string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qemu-system-x86_64")
	script := "#!/bin/sh\necho 'QEMU emulator version " + ver + "'\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// teeFiles returns a config whose kernel and firmware files exist.
func teeFiles(t *testing.T, c vmm.Config) vmm.Config {
	t.Helper()
	dir := t.TempDir()
	touch := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c.StateDir = filepath.Join(dir, "state")
	c.Kernel, c.Initrd = filepath.Join(dir, "vmlinuz"), touch("initrd")
	if err := vmmtest.WriteEFIKernel(c.Kernel, nil); err != nil {
		t.Fatal(err)
	}
	c.TEE.Firmware = touch("firmware.fd")
	return c
}

var (
	milan = func() confidential.SEVHost {
		return confidential.SEVHost{SEV: true, SEVES: true, SNP: true, CBitPos: 51, ReducedPhysBits: 1}
	}
	noSEV = func() confidential.SEVHost { return confidential.SEVHost{} }
)

func TestNewVMConfidential(t *testing.T) {
	unresolved := func(c vmm.Config) vmm.Config {
		c.TEE.SNP.CBitPos, c.TEE.SNP.ReducedPhysBits = 0, 0
		return c
	}
	tests := []struct {
		name    string
		cfg     vmm.Config
		qemu    string // version the fake QEMU reports
		host    func() confidential.SEVHost
		want    []string // substrings of the error; nil for success
		cbitpos uint8
	}{
		{name: "snp", cfg: unresolved(snpBase()), qemu: "9.1.0", host: milan, cbitpos: 51},
		{name: "snp keeps a configured c-bit", cfg: snpBase(), qemu: "9.1.0", host: noSEV, cbitpos: 51},
		{name: "snp on old qemu", cfg: unresolved(snpBase()), qemu: "8.2.2", host: milan,
			want: []string{"QEMU 8.2.2 is too old for SEV-SNP: need 9.1 or newer"}},
		{name: "snp without cpu support", cfg: unresolved(snpBase()), qemu: "9.2.0", host: noSEV,
			want: []string{"does not support SEV-SNP"}},
		{name: "every problem at once", cfg: unresolved(snpBase()), qemu: "7.2.22", host: noSEV,
			want: []string{"too old for SEV-SNP", "does not support SEV-SNP"}},
		{name: "tdx", cfg: tdxBase(), qemu: "10.1.0", host: noSEV},
		{name: "tdx on 10.0", cfg: tdxBase(), qemu: "10.0.3", host: noSEV,
			want: []string{"QEMU 10.0.3 is too old for TDX: need 10.1 or newer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Driver{Binary: fakeVersionQEMU(t, tt.qemu), SEVHost: tt.host}
			v, err := d.NewVM(teeFiles(t, tt.cfg))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("NewVM: %v", err)
				}
				if got := v.Config().TEE.SNP.CBitPos; got != tt.cbitpos {
					t.Errorf("cbitpos = %d, want %d", got, tt.cbitpos)
				}
				if _, err := Args(v.Config()); err != nil {
					t.Errorf("Args of the resolved config: %v", err)
				}
				return
			}
			if !errdefs.IsFailedPrecondition(err) {
				t.Errorf("NewVM: err = %v, want ErrFailedPrecondition", err)
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("NewVM: err = %v, want it to say %q", err, w)
				}
			}
		})
	}
}

// The QEMU installed on a development host may predate SNP; the error must
// then say so in plain words.
func TestNewVMConfidentialRealQEMU(t *testing.T) {
	bin, err := exec.LookPath(DefaultBinary)
	if err != nil {
		t.Skipf("%s not installed: %v", DefaultBinary, err)
	}
	ver, err := BinaryVersion(ctxT(t), bin)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Driver{Binary: bin, SEVHost: milan}.NewVM(teeFiles(t, snpBase()))
	if !ver.Less(MinVersionSNP) {
		if err != nil {
			t.Errorf("NewVM with QEMU %v: %v", ver, err)
		}
		return
	}
	want := "QEMU " + ver.String() + " is too old for SEV-SNP: need 9.1 or newer"
	var old *TooOldError
	if !errors.As(err, &old) || !strings.Contains(err.Error(), want) {
		t.Errorf("NewVM with QEMU %v: err = %v, want %q", ver, err, want)
	}
}

func TestNewVMConfidentialNeedsKVM(t *testing.T) {
	c := teeFiles(t, snpBase())
	c.Accel = vmm.AccelAuto
	acc, why := vmm.DetectAccel()
	if acc == vmm.AccelKVM {
		t.Skipf("this host has KVM (%s): auto cannot fall back to TCG", why)
	}
	_, err := Driver{Binary: fakeVersionQEMU(t, "9.1.0"), SEVHost: milan}.NewVM(c)
	if err == nil || !strings.Contains(err.Error(), "snp needs KVM, but the accelerator is tcg ("+why+")") {
		t.Errorf("NewVM: err = %v, want the accelerator named with the reason", err)
	}
}

func TestSnapshotConfidential(t *testing.T) {
	v, err := Driver{Binary: fakeVersionQEMU(t, "10.1.0")}.NewVM(teeFiles(t, tdxBase()))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Save(ctxT(t), filepath.Join(t.TempDir(), "state")); !errdefs.IsNotImplemented(err) {
		t.Errorf("Save: err = %v, want ErrNotImplemented", err)
	}
	if err := v.Restore(ctxT(t), filepath.Join(t.TempDir(), "state")); !errdefs.IsNotImplemented(err) {
		t.Errorf("Restore: err = %v, want ErrNotImplemented", err)
	}
}
