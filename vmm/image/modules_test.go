package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/sccontainers/scc/internal/kmod"
)

// fakeModuleTree lays out a lib/modules/<release> directory with plain and
// compressed modules and a modules.builtin, and returns its path.
func fakeModuleTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	write := func(rel string, data []byte) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kernel/drivers/virtio/virtio.ko", moduleELF(t, "depends=", "name=virtio"))
	write("kernel/drivers/virtio/virtio_ring.ko.zst", zstdBytes(t, moduleELF(t, "depends=", "name=virtio_ring")))
	write("kernel/drivers/virtio/virtio_pci.ko.gz", gzipBytes(t, moduleELF(t, "depends=virtio_ring,virtio", "name=virtio_pci")))
	write("kernel/drivers/char/hw_random/virtio-rng.ko", moduleELF(t, "depends=virtio,virtio_ring", "name=virtio_rng"))
	write("kernel/lib/libcrc32c.ko", moduleELF(t, "softdep=pre: crc32c", "depends=", "name=libcrc32c"))
	write("kernel/crypto/crc32c_generic.ko", moduleELF(t, "alias=crc32c", "alias=crypto-crc32c", "depends=", "name=crc32c_generic"))
	write("kernel/arch/x86/crypto/crc32c-intel.ko", moduleELF(t, "alias=crc32c", "alias=cpu:type:x86,ven*fam*mod*:feature:*0094*", "depends=", "name=crc32c_intel"))
	write("kernel/fs/erofs/erofs.ko", moduleELF(t, "depends=libcrc32c", "name=erofs"))
	write("kernel/fs/broken/broken.ko", moduleELF(t, "depends=gone", "name=broken"))
	write("kernel/README", []byte("not a module"))
	write("modules.builtin", []byte("kernel/drivers/char/hw_random/rng-core.ko\nkernel/fs/overlayfs/overlay.ko\n"))
	return dir
}

func TestScanModules(t *testing.T) {
	dir := fakeModuleTree(t)
	mods, err := scanModules(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"virtio":         "kernel/drivers/virtio/virtio.ko",
		"virtio_ring":    "kernel/drivers/virtio/virtio_ring.ko.zst",
		"virtio_pci":     "kernel/drivers/virtio/virtio_pci.ko.gz",
		"virtio_rng":     "kernel/drivers/char/hw_random/virtio-rng.ko",
		"libcrc32c":      "kernel/lib/libcrc32c.ko",
		"crc32c_generic": "kernel/crypto/crc32c_generic.ko",
		"crc32c_intel":   "kernel/arch/x86/crypto/crc32c-intel.ko",
		"erofs":          "kernel/fs/erofs/erofs.ko",
		"broken":         "kernel/fs/broken/broken.ko",
	}
	got := map[string]string{}
	for name, m := range mods {
		got[name] = m.Path
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("scanModules() paths = %v, want %v", got, want)
	}
	if d := mods["virtio_pci"].Info.Depends; !reflect.DeepEqual(d, []string{"virtio_ring", "virtio"}) {
		t.Errorf("virtio_pci depends = %q", d)
	}
}

func TestScanModulesBadModule(t *testing.T) {
	dir := fakeModuleTree(t)
	if err := os.WriteFile(filepath.Join(dir, "kernel/fs/bad.ko"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := scanModules(context.Background(), dir); err == nil {
		t.Error("scanModules() accepted a .ko that is not an ELF file")
	}
}

func TestSelectModules(t *testing.T) {
	dir := fakeModuleTree(t)
	mods, err := scanModules(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	builtin, err := builtinModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !builtin["rng_core"] || !builtin["overlay"] || len(builtin) != 2 {
		t.Fatalf("builtinModules() = %v", builtin)
	}

	tests := []struct {
		name      string
		want      []string
		order     []string
		installed []string
		wantErr   error
	}{
		{
			name:  "closure with softdep and builtin",
			want:  []string{"virtio_pci", "virtio_rng", "erofs", "overlay"},
			order: []string{"crc32c_generic", "libcrc32c", "erofs", "virtio", "virtio_ring", "virtio_pci", "virtio_rng"},
			installed: []string{
				"kernel/crypto/crc32c_generic.ko", "kernel/lib/libcrc32c.ko", "kernel/fs/erofs/erofs.ko",
				"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko",
				"kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/char/hw_random/virtio-rng.ko",
			},
		},
		{name: "unknown module", want: []string{"nosuch"}, wantErr: kmod.ErrMissing},
		{name: "missing dependency", want: []string{"broken"}, wantErr: kmod.ErrMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := selectModules(context.Background(), mods, builtin, tt.want)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("selectModules() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var order, installed []string
			for _, m := range sel {
				order = append(order, m.Info.Name)
				installed = append(installed, m.InstallPath())
			}
			if !reflect.DeepEqual(order, tt.order) {
				t.Errorf("order = %q, want %q", order, tt.order)
			}
			if !reflect.DeepEqual(installed, tt.installed) {
				t.Errorf("install paths = %q, want %q", installed, tt.installed)
			}
		})
	}
}

func TestCollectModulesDecompresses(t *testing.T) {
	dir := fakeModuleTree(t)
	files, names, err := collectModules(context.Background(), dir, []string{"virtio_pci"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"virtio", "virtio_ring", "virtio_pci"}; !reflect.DeepEqual(names, want) {
		t.Errorf("names = %q, want %q", names, want)
	}
	for _, f := range files {
		if !bytes.HasPrefix(f.Data, []byte("\x7fELF")) {
			t.Errorf("%s: not an uncompressed ELF module", f.Path)
		}
		if _, err := kmod.ParseModinfo(f.Data); err != nil {
			t.Errorf("%s: %v", f.Path, err)
		}
	}
}

func TestBuiltinModulesMissingFile(t *testing.T) {
	b, err := builtinModules(t.TempDir())
	if err != nil || len(b) != 0 {
		t.Errorf("builtinModules(no file) = %v, %v; want empty, nil", b, err)
	}
}
