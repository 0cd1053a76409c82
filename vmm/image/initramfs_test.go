package image

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"testing"

	"github.com/sccontainers/scc/internal/cpio"
)

// newcEntry is one member of a newc archive as read back by readNewc.
type newcEntry struct {
	mode, rdevMajor, rdevMinor uint32
	data                       string
}

// readNewc parses a newc archive independently of the writer, the way the
// kernel's initramfs unpacker walks it, and returns members in order.
func readNewc(t *testing.T, b []byte) ([]string, map[string]newcEntry) {
	t.Helper()
	var names []string
	entries := map[string]newcEntry{}
	pad := func(n int) int { return (n + 3) &^ 3 }
	off := 0
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad newc header at offset %d", off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("header field %d at %d: %v", i, off, err)
			}
			return uint32(v)
		}
		mode, size, rmaj, rmin, namesize := field(1), int(field(6)), field(9), field(10), int(field(11))
		name := string(b[off+110 : off+110+namesize-1])
		dataOff := pad(off + 110 + namesize)
		if name == "TRAILER!!!" {
			if len(b) != pad(dataOff) {
				t.Errorf("%d bytes after the trailer", len(b)-dataOff)
			}
			return names, entries
		}
		names = append(names, name)
		entries[name] = newcEntry{mode: mode, rdevMajor: rmaj, rdevMinor: rmin, data: string(b[dataOff : dataOff+size])}
		off = pad(dataOff + size)
	}
}

func TestInitramfs(t *testing.T) {
	agent := []byte("\x7fELF fake agent")
	modules := []moduleFile{
		{Path: "kernel/drivers/virtio/virtio.ko", Data: []byte("virtio module")},
		{Path: "kernel/fs/erofs/erofs.ko", Data: []byte("erofs")},
	}
	var buf bytes.Buffer
	if err := newInitramfs("6.1.0-56-amd64", agent, modules).write(&buf); err != nil {
		t.Fatal(err)
	}
	names, entries := readNewc(t, buf.Bytes())

	wantNames := []string{
		"dev", "dev/console", "dev/null",
		"etc", "etc/scc", "etc/scc/modules",
		"init",
		"lib", "lib/modules", "lib/modules/6.1.0-56-amd64",
		"lib/modules/6.1.0-56-amd64/kernel",
		"lib/modules/6.1.0-56-amd64/kernel/drivers",
		"lib/modules/6.1.0-56-amd64/kernel/drivers/virtio",
		"lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio.ko",
		"lib/modules/6.1.0-56-amd64/kernel/fs",
		"lib/modules/6.1.0-56-amd64/kernel/fs/erofs",
		"lib/modules/6.1.0-56-amd64/kernel/fs/erofs/erofs.ko",
		"proc", "run", "sys", "tmp",
	}
	if !reflect.DeepEqual(names, wantNames) {
		t.Errorf("members:\n got %q\nwant %q", names, wantNames)
	}

	checks := []struct {
		name string
		want newcEntry
	}{
		{"init", newcEntry{mode: cpio.TypeReg | 0o755, data: string(agent)}},
		{"dev/console", newcEntry{mode: cpio.TypeChar | 0o600, rdevMajor: 5, rdevMinor: 1}},
		{"dev/null", newcEntry{mode: cpio.TypeChar | 0o666, rdevMajor: 1, rdevMinor: 3}},
		{"tmp", newcEntry{mode: cpio.TypeDir | 0o1777}},
		{"proc", newcEntry{mode: cpio.TypeDir | 0o755}},
		{"etc/scc/modules", newcEntry{mode: cpio.TypeReg | 0o644, data: "lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio.ko\nlib/modules/6.1.0-56-amd64/kernel/fs/erofs/erofs.ko\n"}},
		{"lib/modules/6.1.0-56-amd64/kernel/fs/erofs/erofs.ko", newcEntry{mode: cpio.TypeReg | 0o644, data: "erofs"}},
	}
	for _, c := range checks {
		if got := entries[c.name]; got != c.want {
			t.Errorf("%s = %+v, want %+v", c.name, got, c.want)
		}
	}
	if ModulesListPath != "/etc/scc/modules" {
		t.Errorf("ModulesListPath = %q; the guest agent loads /etc/scc/modules", ModulesListPath)
	}
}

func TestInitramfsReproducible(t *testing.T) {
	build := func(c Compression) []byte {
		mods := []moduleFile{{Path: "kernel/b.ko", Data: []byte("b")}, {Path: "kernel/a.ko", Data: []byte("a")}}
		var buf bytes.Buffer
		if err := compressTo(&buf, c, newInitramfs("r", []byte("agent"), mods).write); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	for _, c := range []Compression{CompressNone, CompressGzip} {
		t.Run(string(c), func(t *testing.T) {
			a, b := build(c), build(c)
			if !bytes.Equal(a, b) {
				t.Error("two builds of the same tree differ")
			}
		})
	}

	// The gzip variant holds exactly the plain archive.
	zr, err := gzip.NewReader(bytes.NewReader(build(CompressGzip)))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, build(CompressNone)) {
		t.Error("gunzipped initramfs differs from the uncompressed one")
	}
	if err := compressTo(io.Discard, "lz77", func(io.Writer) error { return nil }); err == nil {
		t.Error("compressTo accepted an unknown compression")
	}
}

// BenchmarkInitramfs writes an initramfs the size of the guest's (a 9 MiB
// agent and 3 MiB of modules), uncompressed as the guest image ships it,
// and gzip-compressed.
//
//	go test -run '^$' -bench Initramfs ./vmm/image/
func BenchmarkInitramfs(b *testing.B) {
	agent := bytes.Repeat([]byte("scc-agent\x00"), 900<<10)
	var mods []moduleFile
	for i := 0; i < 24; i++ {
		mods = append(mods, moduleFile{Path: fmt.Sprintf("kernel/m%d.ko", i), Data: bytes.Repeat([]byte{byte(i)}, 128<<10)})
	}
	for _, c := range []Compression{CompressNone, CompressGzip} {
		b.Run(string(c), func(b *testing.B) {
			b.SetBytes(int64(len(agent) + 24*128<<10))
			for b.Loop() {
				if err := compressTo(io.Discard, c, newInitramfs("6.1.0-56-amd64", agent, mods).write); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
