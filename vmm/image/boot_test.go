package image

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sccontainers/scc/vmm"
)

const (
	qbootROM = "/usr/share/qemu/qboot.rom"
	// ovmfFD is Debian's OVMF (package ovmf) in one file, which -bios takes.
	ovmfFD = "/usr/share/ovmf/OVMF.fd"
)

// TestBuildAndBoot builds a guest image around a stand-in agent from the
// cached Debian kernel package and boots it under QEMU TCG, once with each
// initramfs compression, checking that the agent runs as /init and that
// every module in the manifest loads. It logs the boot times that chose
// DefaultCompression. It then boots the image's EFI kernel through OVMF,
// the way confidential VMs start it.
func TestBuildAndBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (kernel package extraction keeps device nodes and ownership)")
	}
	for _, bin := range []string{"qemu-system-x86_64", "dpkg-deb", "xz"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	for _, fw := range []string{qbootROM, ovmfFD} {
		if _, err := os.Stat(fw); err != nil {
			t.Skipf("%s missing (make deps installs qemu-system-data and ovmf)", fw)
		}
	}
	deb, _ := filepath.Glob(filepath.Join(DefaultCacheDir, "kernel", "linux-image-*.deb"))
	if len(deb) == 0 {
		t.Skipf("no kernel package cached in %s/kernel (run `scc guest build` once)", DefaultCacheDir)
	}
	pkg, _, _ := strings.Cut(filepath.Base(deb[len(deb)-1]), "_")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)

	agent := filepath.Join(t.TempDir(), "bootagent")
	build := exec.CommandContext(ctx, "go", "build", "-o", agent, "./testdata/bootagent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build stand-in agent: %v\n%s", err, out)
	}

	out := t.TempDir()
	start := time.Now()
	m, err := Build(ctx, Options{OutputDir: out, Agent: agent, KernelPackage: pkg, Compression: CompressNone})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Logf("built %s (%s) in %v: modules %v", m.KernelRelease, m.KernelPackageVersion, time.Since(start).Round(time.Millisecond), m.Modules)

	loaded, err := Load(out)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := loaded.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if loaded.Kernel != m.Kernel || loaded.EFIKernel != m.EFIKernel || loaded.Initrd != m.Initrd || loaded.CmdlineSHA256 != m.CmdlineSHA256 {
		t.Errorf("Load() = %+v, Build() returned %+v", loaded, m)
	}
	// The EFI kernel is the package's bzImage byte for byte, so building
	// twice gives the same digest.
	if loaded.Version != ManifestVersion || filepath.Base(m.EFIKernel.Path) != VmlinuzName {
		t.Errorf("manifest version %d, efi kernel %s; want %d, %s", loaded.Version, m.EFIKernel.Path, ManifestVersion, VmlinuzName)
	}
	if f, err := vmm.ReadKernelFormat(m.EFIKernel.Path); err != nil || f != vmm.KernelEFI {
		t.Errorf("efi kernel format %s, %v; want %s", f, err, vmm.KernelEFI)
	}
	if f, err := vmm.ReadKernelFormat(m.Kernel.Path); err != nil || f != vmm.KernelPVH {
		t.Errorf("kernel format %s, %v; want %s", f, err, vmm.KernelPVH)
	}
	if bz, err := debFile(ctx, deb[len(deb)-1], "./boot/vmlinuz-"+m.KernelRelease); err != nil {
		t.Error(err)
	} else if hex.EncodeToString(hashBytes(bz)) != m.EFIKernel.SHA256 {
		t.Errorf("efi kernel sha256 %s is not that of the package's vmlinuz", m.EFIKernel.SHA256)
	}

	// The gzip variant is the same archive compressed, as Build writes it.
	plain, err := os.ReadFile(m.Initrd.Path)
	if err != nil {
		t.Fatal(err)
	}
	gz := filepath.Join(t.TempDir(), "initrd.gz")
	var gzBuf bytes.Buffer
	if err := compressTo(&gzBuf, CompressGzip, func(w io.Writer) error { _, err := w.Write(plain); return err }); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gz, gzBuf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, v := range []struct {
		name   string
		initrd string
		size   int
	}{
		{"none", m.Initrd.Path, len(plain)},
		{"gzip", gz, gzBuf.Len()},
	} {
		t.Run(v.name, func(t *testing.T) {
			var best time.Duration
			for i := 0; i < 2; i++ {
				d := boot(ctx, t, qbootROM, m.Kernel.Path, v.initrd, m.Cmdline, m.Modules)
				if best == 0 || d < best {
					best = d
				}
			}
			t.Logf("initrd %s (%d bytes): boot to agent done in %v (best of 2)", v.name, v.size, best.Round(time.Millisecond))
		})
	}
	t.Run("efi kernel through ovmf", func(t *testing.T) {
		d := boot(ctx, t, ovmfFD, m.EFIKernel.Path, m.Initrd.Path, m.Cmdline, m.Modules)
		t.Logf("OVMF and vmlinuz: boot to agent done in %v", d.Round(time.Millisecond))
	})
}

// debFile returns one file of a .deb, named as in its data archive.
func debFile(ctx context.Context, deb, name string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "scc-deb-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := extractDeb(ctx, deb, dir); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(dir, name))
}

// boot runs the image under QEMU TCG until the guest powers off, checks the
// agent's report and returns the time from QEMU start to the agent's last
// line.
func boot(ctx context.Context, t *testing.T, firmware, kernel, initrd, cmdline string, modules []string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-M", "q35,accel=tcg", "-cpu", "max", "-m", "512", "-smp", "1",
		"-bios", firmware, "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
		"-nographic", "-nodefaults", "-no-user-config", "-serial", "stdio", "-no-reboot")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	var console []string
	var done time.Duration
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		console = append(console, line)
		if line == "SCC-BOOTAGENT done" {
			done = time.Since(start)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("qemu: %v\nstderr: %s\nconsole:\n%s", err, stderr.String(), strings.Join(console, "\n"))
	}
	text := strings.Join(console, "\n")
	if done == 0 {
		t.Fatalf("agent never finished; console:\n%s", text)
	}
	if !strings.Contains(text, "SCC-BOOTAGENT modules-ok") {
		t.Errorf("modules did not load cleanly; console:\n%s", text)
	}
	var loaded []string
	for _, line := range console {
		if l, ok := strings.CutPrefix(line, "SCC-BOOTAGENT loaded: "); ok {
			loaded = strings.Fields(l)
		}
	}
	for _, want := range modules {
		found := false
		for _, l := range loaded {
			found = found || l == want
		}
		if !found {
			t.Errorf("module %s not in guest /proc/modules %v", want, loaded)
		}
	}
	return done
}
