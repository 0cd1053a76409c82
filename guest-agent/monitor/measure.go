package monitor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/sccontainers/scc/attest/vtpm"
)

// Files the boot measurements read.
const (
	kernelNotes = "/sys/kernel/notes"
	cmdlineFile = "/proc/cmdline"
	selfExe     = "/proc/self/exe"
)

// measureBoot records what booted, in order: the kernel, its command
// line, the initramfs at root (but the executable, exe) and the
// executable that is the monitor and the agent. The guest measures what it
// can see of itself; firmware measures the rest (docs/monitor.md).
func measureBoot(ctx context.Context, m *meter, root, exe string) error {
	start := time.Now()
	kernel, err := kernelIdentity()
	if err != nil {
		return err
	}
	cmdline, err := os.ReadFile(cmdlineFile)
	if err != nil {
		return fmt.Errorf("measure command line: %w", err)
	}
	tree, err := treeDigest(root, exe)
	if err != nil {
		return fmt.Errorf("measure initramfs: %w", err)
	}
	agent, err := fileDigest(selfExe)
	if err != nil {
		return fmt.Errorf("measure agent: %w", err)
	}
	for _, ev := range []struct {
		typ  vtpm.EventType
		data []byte
	}{
		{vtpm.EventKernel, []byte(kernel)},
		{vtpm.EventCmdline, bytes.TrimSpace(cmdline)},
		{vtpm.EventInitramfs, tree[:]},
		{vtpm.EventAgent, agent[:]},
	} {
		if err := m.measure(vtpm.PCRBoot, ev.typ, ev.data); err != nil {
			return err
		}
	}
	log.G(ctx).WithField("kernel", kernel).WithField("initramfs", hex.EncodeToString(tree[:])).
		WithField("agent", hex.EncodeToString(agent[:])).WithField("duration", time.Since(start)).Info("boot measured")
	return nil
}

// kernelIdentity describes the running kernel: release, version string
// and GNU build ID (from the kernel's ELF notes), which changes with any
// change to the kernel image.
func kernelIdentity() (string, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "", fmt.Errorf("measure kernel: uname: %w", err)
	}
	notes, err := os.ReadFile(kernelNotes)
	if err != nil {
		return "", fmt.Errorf("measure kernel: %w", err)
	}
	id, err := buildID(notes)
	if err != nil {
		return "", fmt.Errorf("measure kernel: %w", err)
	}
	return fmt.Sprintf("release=%s version=%s build-id=%x",
		unix.ByteSliceToString(uts.Release[:]), unix.ByteSliceToString(uts.Version[:]), id), nil
}

// buildID finds the NT_GNU_BUILD_ID note in ELF notes (Elf64_Nhdr
// records: namesz, descsz, type, name and desc each padded to 4 bytes).
func buildID(notes []byte) ([]byte, error) {
	const ntGNUBuildID = 3
	for len(notes) >= 12 {
		namesz := binary.LittleEndian.Uint32(notes[0:4])
		descsz := binary.LittleEndian.Uint32(notes[4:8])
		typ := binary.LittleEndian.Uint32(notes[8:12])
		nameEnd := 12 + align4(namesz)
		descEnd := nameEnd + align4(descsz)
		if namesz > 1<<16 || descsz > 1<<16 || uint64(len(notes)) < descEnd {
			break
		}
		name := notes[12 : 12+namesz]
		if typ == ntGNUBuildID && string(bytes.TrimRight(name, "\x00")) == "GNU" {
			return bytes.Clone(notes[nameEnd : nameEnd+uint64(descsz)]), nil
		}
		notes = notes[descEnd:]
	}
	return nil, fmt.Errorf("no GNU build ID in %s", kernelNotes)
}

func align4(n uint32) uint64 { return (uint64(n) + 3) &^ 3 }

// treeDigest computes the initramfs tree digest of the filesystem at
// root, without the file exclude, as the package documentation defines
// it.
func treeDigest(root, exclude string) ([32]byte, error) {
	var rootDev uint64
	fi, err := os.Lstat(root)
	if err != nil {
		return [32]byte{}, err
	}
	rootDev = fi.Sys().(*syscall.Stat_t).Dev
	type entry struct {
		path   string
		kind   byte
		perm   fs.FileMode
		digest [32]byte
	}
	var entries []entry
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Sys().(*syscall.Stat_t).Dev != rootDev {
			if d.IsDir() {
				return filepath.SkipDir // another mount
			}
			return nil
		}
		if p == exclude {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e := entry{path: rel, perm: info.Mode().Perm()}
		switch {
		case info.Mode().IsRegular():
			e.kind = 'f'
			if e.digest, err = fileDigest(p); err != nil {
				return err
			}
		case info.Mode()&fs.ModeSymlink != 0:
			e.kind = 'l'
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.digest = sha256.Sum256([]byte(target))
		default:
			return nil
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return [32]byte{}, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].path < entries[j].path })
	h := sha256.New()
	for _, e := range entries {
		h.Write([]byte{e.kind, ' '})
		h.Write([]byte(strconv.FormatUint(uint64(e.perm), 8)))
		h.Write([]byte{' '})
		h.Write([]byte(e.path))
		h.Write([]byte{0})
		h.Write(e.digest[:])
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}

func fileDigest(path string) ([32]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, fmt.Errorf("hash %s: %w", path, err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}
