// Package image builds the guest image a VM boots: two forms of the kernel
// of Debian's kernel package (the uncompressed PVH vmlinux, which qboot
// starts fastest, for ordinary VMs; the package's bzImage, whose EFI stub
// UEFI firmware needs, for confidential VMs and any VM booting through
// OVMF), an initramfs holding the guest agent as /init and the kernel
// modules it needs, and a manifest recording their digests and the kernel
// command line, from which the VM's launch measurement is computed.
package image

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/containerd/log"

	"github.com/sccontainers/scc/vmm"
)

// Defaults for Options.
const (
	DefaultCacheDir  = "/var/cache/scc"
	DefaultOutputDir = "/var/lib/scc/guest"
	// DefaultCmdline sends the console to the first serial port, keeps the
	// boot quiet (every console byte is slow under TCG), and makes a
	// panicking guest reset at once (-no-reboot turns that into a QEMU exit).
	// no_timer_check skips the IO-APIC timer check, which fails, and
	// panics the guest, when many VMs boot at once on few host CPUs (16
	// TCG VMs on 2 cores did).
	DefaultCmdline = "console=ttyS0 quiet panic=-1 reboot=t no_timer_check"
	// DefaultCompression is the fastest to boot under QEMU TCG.
	DefaultCompression = CompressNone
)

// DefaultModules returns the modules the guest agent needs: virtio
// transport, console and block devices, the entropy source, 9p for shared
// directories, erofs image layers, dm-verity to check them and overlayfs
// to stack them.
func DefaultModules() []string {
	return []string{"virtio_pci", "virtio_console", "9pnet_virtio", "9p", "overlay", "virtio_blk", "virtio_rng", "erofs", "dm_mod", "dm_verity", "virtio_net", "configfs", "bridge", "veth", "tun"}
}

// Options configure Build. Zero fields take the defaults.
type Options struct {
	// CacheDir keeps downloaded kernel packages in CacheDir/kernel.
	CacheDir string
	// OutputDir receives vmlinux, vmlinuz, initrd.img and manifest.json.
	OutputDir string
	// Agent is the guest agent, a static binary that becomes /init.
	Agent string
	// KernelPackage is the versioned kernel package, for example
	// linux-image-6.1.0-56-amd64; by default the one linux-image-amd64
	// depends on.
	KernelPackage string
	// Modules are the modules to load at boot, with their dependencies;
	// nil means DefaultModules, an empty slice none. Modules built into the
	// kernel are skipped.
	Modules []string
	// Cmdline is the kernel command line.
	Cmdline string
	// Compression of the initramfs.
	Compression Compression
}

func (o Options) withDefaults() Options {
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if o.OutputDir == "" {
		o.OutputDir = DefaultOutputDir
	}
	if o.Modules == nil {
		o.Modules = DefaultModules()
	}
	if o.Cmdline == "" {
		o.Cmdline = DefaultCmdline
	}
	if o.Compression == "" {
		o.Compression = DefaultCompression
	}
	return o
}

// Output file names in the image directory.
const (
	VmlinuxName = "vmlinux" // Manifest.Kernel
	VmlinuzName = "vmlinuz" // Manifest.EFIKernel
	InitrdName  = "initrd.img"
)

// Build builds the guest image into opts.OutputDir and returns its
// manifest, with absolute paths. The files are replaced one by one and the
// manifest last, so a failed build leaves the previous manifest, which then
// fails Verify rather than describing a mix.
func Build(ctx context.Context, opts Options) (*Manifest, error) {
	opts = opts.withDefaults()
	if opts.Agent == "" {
		return nil, errors.New("build guest image: no agent binary given")
	}
	agent, err := readAgent(opts.Agent)
	if err != nil {
		return nil, fmt.Errorf("build guest image: %w", err)
	}

	pkg := opts.KernelPackage
	if pkg == "" {
		if pkg, err = resolveKernelPackage(ctx, kernelMetaPackage); err != nil {
			return nil, err
		}
	}
	deb, err := downloadKernel(ctx, filepath.Join(opts.CacheDir, "kernel"), pkg)
	if err != nil {
		return nil, err
	}
	version, err := debVersion(ctx, deb)
	if err != nil {
		return nil, err
	}

	tmp, err := os.MkdirTemp("", "scc-kernel-")
	if err != nil {
		return nil, fmt.Errorf("build guest image: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := extractDeb(ctx, deb, tmp); err != nil {
		return nil, err
	}
	release, err := kernelRelease(tmp)
	if err != nil {
		return nil, fmt.Errorf("find kernel in %s: %w", deb, err)
	}
	log.G(ctx).WithField("package", pkg).WithField("version", version).WithField("release", release).Info("building guest image")

	bz, err := os.ReadFile(filepath.Join(tmp, "boot", "vmlinuz-"+release))
	if err != nil {
		return nil, fmt.Errorf("read kernel image: %w", err)
	}
	if f := vmm.KernelFormatOf(bz); f != vmm.KernelEFI {
		return nil, fmt.Errorf("kernel image of %s: %w: its format is %s, and UEFI firmware (OVMF, TDVF) starts only a bzImage with an EFI stub", pkg, vmm.ErrKernelFormat, f)
	}
	vmlinux, err := Vmlinux(ctx, bz)
	if err != nil {
		return nil, fmt.Errorf("extract vmlinux from %s: %w", deb, err)
	}

	modDir := filepath.Join(tmp, "lib", "modules", release)
	files, names, err := collectModules(ctx, modDir, opts.Modules)
	if err != nil {
		return nil, err
	}

	var initrd bytes.Buffer
	tree := newInitramfs(release, agent, files)
	if err := compressTo(&initrd, opts.Compression, tree.write); err != nil {
		return nil, fmt.Errorf("write initramfs: %w", err)
	}

	if err := os.MkdirAll(opts.OutputDir, 0o755); err != nil {
		return nil, fmt.Errorf("create image directory: %w", err)
	}
	m := &Manifest{
		Version:              ManifestVersion,
		Kernel:               File{Path: filepath.Join(opts.OutputDir, VmlinuxName), SHA256: hex.EncodeToString(hashBytes(vmlinux))},
		EFIKernel:            File{Path: filepath.Join(opts.OutputDir, VmlinuzName), SHA256: hex.EncodeToString(hashBytes(bz))},
		Initrd:               File{Path: filepath.Join(opts.OutputDir, InitrdName), SHA256: hex.EncodeToString(hashBytes(initrd.Bytes()))},
		Cmdline:              opts.Cmdline,
		CmdlineSHA256:        hex.EncodeToString(hashBytes([]byte(opts.Cmdline))),
		KernelRelease:        release,
		KernelPackage:        pkg,
		KernelPackageVersion: version,
		AgentSHA256:          hex.EncodeToString(hashBytes(agent)),
		InitrdCompression:    opts.Compression,
		Modules:              names,
	}
	if err := writeFileAtomic(m.Kernel.Path, vmlinux, 0o644); err != nil {
		return nil, fmt.Errorf("write vmlinux: %w", err)
	}
	// The bzImage as the package ships it: its digest is the package's, and
	// the SEV kernel hashes cover exactly these bytes.
	if err := writeFileAtomic(m.EFIKernel.Path, bz, 0o644); err != nil {
		return nil, fmt.Errorf("write vmlinuz: %w", err)
	}
	if err := writeFileAtomic(m.Initrd.Path, initrd.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("write initrd: %w", err)
	}
	if err := m.write(opts.OutputDir); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	return m, nil
}

// collectModules selects the wanted modules and their dependencies from a
// module tree and reads them, uncompressed, in load order.
func collectModules(ctx context.Context, modDir string, want []string) ([]moduleFile, []string, error) {
	mods, err := scanModules(ctx, modDir)
	if err != nil {
		return nil, nil, err
	}
	builtin, err := builtinModules(modDir)
	if err != nil {
		return nil, nil, err
	}
	selected, err := selectModules(ctx, mods, builtin, want)
	if err != nil {
		return nil, nil, err
	}
	files := make([]moduleFile, 0, len(selected))
	names := make([]string, 0, len(selected))
	for _, m := range selected {
		data, err := readModule(ctx, filepath.Join(modDir, filepath.FromSlash(m.Path)))
		if err != nil {
			return nil, nil, fmt.Errorf("read module %s: %w", m.Info.Name, err)
		}
		files = append(files, moduleFile{Path: path.Clean(m.InstallPath()), Data: data})
		names = append(names, m.Info.Name)
	}
	return files, names, nil
}

// readAgent reads the agent binary and checks that it is a static ELF
// executable: the initramfs has no dynamic loader or libraries.
func readAgent(p string) ([]byte, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read agent: %w", err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("agent %s is not an ELF executable: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("agent %s is dynamically linked; build it with CGO_ENABLED=0", p)
		}
	}
	if f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("agent %s is built for %v, want x86-64", p, f.Machine)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return nil, fmt.Errorf("agent %s is an ELF %v, want an executable", p, f.Type)
	}
	return data, nil
}
