package kmod

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

// buildELF returns a minimal little-endian ELF64 relocatable file holding
// the given sections, enough for debug/elf to find them by name.
func buildELF(t *testing.T, sections map[string][]byte) []byte {
	t.Helper()
	names := sortedKeys(sections)
	shstr := []byte{0}
	nameOff := map[string]uint32{}
	for _, n := range append(names, ".shstrtab") {
		nameOff[n] = uint32(len(shstr))
		shstr = append(append(shstr, n...), 0)
	}

	const ehsize, shentsize = 64, 64
	var body bytes.Buffer
	headers := []elf.Section64{{}} // index 0 is the null section
	off := uint64(ehsize)
	for _, n := range names {
		data := sections[n]
		headers = append(headers, elf.Section64{
			Name: nameOff[n], Type: uint32(elf.SHT_PROGBITS), Off: off,
			Size: uint64(len(data)), Addralign: 1,
		})
		body.Write(data)
		off += uint64(len(data))
	}
	headers = append(headers, elf.Section64{
		Name: nameOff[".shstrtab"], Type: uint32(elf.SHT_STRTAB), Off: off,
		Size: uint64(len(shstr)), Addralign: 1,
	})
	body.Write(shstr)
	off += uint64(len(shstr))

	hdr := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64),
		Version: uint32(elf.EV_CURRENT), Shoff: off, Ehsize: ehsize,
		Shentsize: shentsize, Shnum: uint16(len(headers)),
		Shstrndx: uint16(len(headers) - 1),
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)

	var out bytes.Buffer
	for _, v := range []any{hdr, body.Bytes(), headers} {
		if err := binary.Write(&out, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

func modinfo(fields ...string) []byte {
	var b []byte
	for _, f := range fields {
		b = append(append(b, f...), 0)
	}
	return b
}

func TestParseModinfo(t *testing.T) {
	tests := []struct {
		name    string
		file    []byte
		want    Info
		wantErr bool
	}{
		{
			name: "full",
			file: buildELF(t, map[string][]byte{
				".text": {0x90},
				".modinfo": append(modinfo(
					"license=GPL",
					"alias=crypto-crc32c",
					"softdep=pre: crc32c",
					"depends=9pnet,virtio-ring, fscache",
					"intree=Y",
				), append([]byte{0, 0, 0}, modinfo( // padding the linker inserts
					"name=9pnet-virtio",
					"vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions ",
				)...)...),
			}),
			want: Info{
				Name:     "9pnet_virtio",
				Depends:  []string{"9pnet", "virtio_ring", "fscache"},
				SoftPre:  []string{"crc32c"},
				Aliases:  []string{"crypto_crc32c"},
				Vermagic: "6.1.0-56-amd64 SMP preempt mod_unload modversions ",
			},
		},
		{
			name: "empty depends",
			file: buildELF(t, map[string][]byte{".modinfo": modinfo("depends=", "name=virtio")}),
			want: Info{Name: "virtio"},
		},
		{
			name:    "no name",
			file:    buildELF(t, map[string][]byte{".modinfo": modinfo("depends=virtio")}),
			wantErr: true,
		},
		{
			name:    "no modinfo section",
			file:    buildELF(t, map[string][]byte{".text": {0x90}}),
			wantErr: true,
		},
		{
			name:    "not elf",
			file:    []byte("this is not an ELF file at all, honest"),
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseModinfo(tt.file)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseModinfo() error = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseModinfo() = %+v, want %+v", got, tt.want)
			}
		})
	}
	t.Run("no modinfo is ErrNoModinfo", func(t *testing.T) {
		_, err := ParseModinfo(buildELF(t, map[string][]byte{".data": {1}}))
		if !errors.Is(err, ErrNoModinfo) {
			t.Errorf("err = %v, want ErrNoModinfo", err)
		}
	})
}

func TestParseSoftPre(t *testing.T) {
	tests := []struct {
		value string
		want  []string
	}{
		{"pre: crc32c", []string{"crc32c"}},
		{"pre: platform:gpio_amd_fch platform:leds-gpio", []string{"platform:gpio_amd_fch", "platform:leds_gpio"}},
		{"post: mpls_gso", nil},
		{"pre: ecb post: cbc", []string{"ecb"}},
		{"post: a pre: b", []string{"b"}},
		{"sha256", []string{"sha256"}},
		{"", nil},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			if got := parseSoftPre(tt.value); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseSoftPre(%q) = %q, want %q", tt.value, got, tt.want)
			}
		})
	}
}

// TestParseModinfoRealModule reads libcrc32c from a Debian kernel tree on
// this machine: the host's own modules or the guest kernel build cache.
func TestParseModinfoRealModule(t *testing.T) {
	var path string
	for _, pattern := range []string{
		"/lib/modules/*/kernel/lib/libcrc32c.ko",
		"/var/cache/scc/kernel/*/lib/modules/*/kernel/lib/libcrc32c.ko",
	} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			path = m[0]
			break
		}
	}
	var data []byte
	var err error
	if path != "" {
		data, err = os.ReadFile(path)
	} else {
		data, err = moduleFromCachedDeb(t, "libcrc32c.ko")
		path = "cached kernel package"
	}
	if err != nil {
		t.Fatal(err)
	}
	if data == nil {
		t.Skip("no libcrc32c.ko under /lib/modules and no kernel package in /var/cache/scc/kernel (run `scc guest build` once to populate the cache)")
	}
	info, err := ParseModinfo(data)
	if err != nil {
		t.Fatalf("ParseModinfo(%s): %v", path, err)
	}
	if info.Name != "libcrc32c" {
		t.Errorf("Name = %q, want libcrc32c", info.Name)
	}
	if !reflect.DeepEqual(info.SoftPre, []string{"crc32c"}) {
		t.Errorf("SoftPre = %q, want [crc32c]", info.SoftPre)
	}
	if info.Vermagic == "" {
		t.Error("Vermagic is empty")
	}
}

// moduleFromCachedDeb reads one module file out of the kernel package that
// the guest image build caches, or returns nil when there is none.
func moduleFromCachedDeb(t *testing.T, name string) ([]byte, error) {
	t.Helper()
	debs, _ := filepath.Glob("/var/cache/scc/kernel/linux-image-*.deb")
	if len(debs) == 0 {
		return nil, nil
	}
	for _, bin := range []string{"dpkg-deb", "tar"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, nil
		}
	}
	fsys := exec.Command("dpkg-deb", "--fsys-tarfile", debs[0])
	tar := exec.Command("tar", "-xO", "--wildcards", "*/"+name)
	pipe, err := fsys.StdoutPipe()
	if err != nil {
		return nil, err
	}
	tar.Stdin = pipe
	if err := fsys.Start(); err != nil {
		return nil, err
	}
	out, err := tar.Output()
	if werr := fsys.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		return nil, fmt.Errorf("extract %s from %s: %w", name, debs[0], err)
	}
	return out, nil
}
