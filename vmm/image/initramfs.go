package image

import (
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/sccontainers/scc/internal/cpio"
)

// Compression is how the initramfs is compressed.
type Compression string

const (
	// CompressNone leaves the initramfs uncompressed. It is the default
	// because it boots faster under QEMU TCG: QEMU loads the larger file
	// quicker than the emulated guest gunzips the smaller one. Measured
	// with the Debian 6.1 kernel, from QEMU start until the agent has
	// loaded its modules: 4.6 MB initramfs 1.51 s plain vs 1.63 s gzip
	// (best of 2); 30 MB initramfs (a large agent) 1.84 s vs 2.2 s (median
	// of 6).
	// TestBuildAndBoot logs the numbers for the current kernel.
	CompressNone Compression = "none"
	// CompressGzip compresses the initramfs with gzip, to a third to a
	// half of its size, for when disk space matters more than boot time.
	CompressGzip Compression = "gzip"
)

// ModulesListPath is where the initramfs lists the modules to load, in
// order, one path relative to "/" per line. The guest agent passes it to
// kmod.LoadList.
const ModulesListPath = "/etc/scc/modules"

// initramfs is the file tree of an initramfs, keyed by path without a
// leading "/".
type initramfs map[string]ramEntry

type ramEntry struct {
	mode         uint32 // type bits and permissions
	data         []byte
	major, minor uint32
}

func (t initramfs) dir(p string, perm uint32) {
	t.parents(p)
	t[p] = ramEntry{mode: cpio.TypeDir | perm}
}

func (t initramfs) file(p string, perm uint32, data []byte) {
	t.parents(p)
	t[p] = ramEntry{mode: cpio.TypeReg | perm, data: data}
}

func (t initramfs) charDev(p string, perm, major, minor uint32) {
	t.parents(p)
	t[p] = ramEntry{mode: cpio.TypeChar | perm, major: major, minor: minor}
}

// parents adds the missing parent directories of p.
func (t initramfs) parents(p string) {
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := t[d]; !ok {
			t[d] = ramEntry{mode: cpio.TypeDir | 0o755}
		}
	}
}

// write writes the tree as a newc cpio archive. Members are sorted by path,
// so parents precede children, and carry zero times and owners: the same
// tree always gives the same bytes, and so the same launch measurement.
func (t initramfs) write(w io.Writer) error {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	sort.Strings(names)
	cw := cpio.NewWriter(w)
	for _, n := range names {
		e := t[n]
		hdr := &cpio.Header{Name: n, Mode: e.mode, Size: int64(len(e.data)), RdevMajor: e.major, RdevMinor: e.minor}
		if err := cw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := cw.Write(e.data); err != nil {
			return err
		}
	}
	return cw.Close()
}

// moduleFile is a module as it goes into the initramfs.
type moduleFile struct {
	Path string // relative to lib/modules/<release>, uncompressed name
	Data []byte // uncompressed contents
}

// newInitramfs lays out the guest's initramfs: the agent as /init, the
// mount points it needs, console and null device nodes (the kernel opens
// /dev/console for init before anything mounts devtmpfs), and the modules
// with their load list.
func newInitramfs(release string, agent []byte, modules []moduleFile) initramfs {
	t := initramfs{}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "etc/scc", "lib/modules/" + release} {
		t.dir(d, 0o755)
	}
	t["tmp"] = ramEntry{mode: cpio.TypeDir | 0o1777}
	t.charDev("dev/console", 0o600, 5, 1)
	t.charDev("dev/null", 0o666, 1, 3)
	t.file("init", 0o755, agent)

	var list strings.Builder
	for _, m := range modules {
		p := path.Join("lib/modules", release, m.Path)
		t.file(p, 0o644, m.Data)
		list.WriteString(p + "\n")
	}
	t.file(strings.TrimPrefix(ModulesListPath, "/"), 0o644, []byte(list.String()))
	return t
}

// compressTo writes the archive through the chosen compression.
func compressTo(w io.Writer, c Compression, write func(io.Writer) error) error {
	switch c {
	case CompressNone, "":
		return write(w)
	case CompressGzip:
		// A zero gzip header (no name, no mtime) keeps the output stable.
		zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
		if err != nil {
			return err
		}
		if err := write(zw); err != nil {
			return err
		}
		return zw.Close()
	default:
		return fmt.Errorf("unknown initramfs compression %q", c)
	}
}
