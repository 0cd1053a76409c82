package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/log"
	"github.com/klauspost/compress/zstd"

	"github.com/sccontainers/scc/internal/kmod"
)

// module is a kernel module found in a module tree.
type module struct {
	Info kmod.Info
	// Path is the file relative to the lib/modules/<release> directory, as
	// found (possibly compressed).
	Path string
}

// moduleSuffixes are the module file names accepted, longest first.
var moduleSuffixes = []string{".ko.zst", ".ko.xz", ".ko.gz", ".ko"}

// InstallPath returns where the module goes in the initramfs, relative to
// lib/modules/<release>: always uncompressed, since the guest loads it with
// a plain finit_module.
func (m module) InstallPath() string {
	for _, s := range moduleSuffixes {
		if base, ok := strings.CutSuffix(m.Path, s); ok {
			return base + ".ko"
		}
	}
	return m.Path
}

// scanModules reads the modinfo of every module under modDir/kernel and
// returns them by module name. Debian's package ships no modules.dep, so
// the dependency graph comes from the modules themselves.
func scanModules(ctx context.Context, modDir string) (map[string]module, error) {
	mods := map[string]module{}
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isModuleFile(p) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(modDir, p)
		if err != nil {
			return err
		}
		data, err := readModule(ctx, p)
		if err != nil {
			return err
		}
		info, err := kmod.ParseModinfo(data)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if prev, dup := mods[info.Name]; dup {
			// WalkDir goes in name order, so the choice is stable.
			log.G(ctx).Warnf("module %s found twice, using %s over %s", info.Name, prev.Path, rel)
			return nil
		}
		mods[info.Name] = module{Info: info, Path: filepath.ToSlash(rel)}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan modules: %w", err)
	}
	return mods, nil
}

func isModuleFile(name string) bool {
	for _, s := range moduleSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// readModule returns the uncompressed contents of a module file.
func readModule(ctx context.Context, p string) ([]byte, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasSuffix(p, ".ko"):
		return data, nil
	case strings.HasSuffix(p, ".ko.gz"):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("decompress %s: %w", p, err)
		}
		return io.ReadAll(zr)
	case strings.HasSuffix(p, ".ko.zst"):
		zr, err := zstd.NewReader(bytes.NewReader(data), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("decompress %s: %w", p, err)
		}
		defer zr.Close()
		return io.ReadAll(zr)
	case strings.HasSuffix(p, ".ko.xz"):
		// Kernel modules use xz's CRC32 check and no BCJ filter, but Go has
		// no xz decoder in its standard library; xz(1) is always there.
		out, err := runFilter(ctx, data, "xz", "-dc")
		if err != nil {
			return nil, fmt.Errorf("decompress %s: %w", p, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: not a kernel module file", p)
}

// builtinModules returns the names of the modules built into the kernel,
// from modDir/modules.builtin; a tree without that file has none.
func builtinModules(modDir string) (map[string]bool, error) {
	data, err := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read modules.builtin: %w", err)
	}
	builtin := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			builtin[kmod.Normalize(strings.TrimSuffix(path.Base(line), ".ko"))] = true
		}
	}
	return builtin, sc.Err()
}

// selectModules returns the modules to load, in load order: the closure of
// want, leaving out wanted modules built into the kernel.
func selectModules(ctx context.Context, mods map[string]module, builtin map[string]bool, want []string) ([]module, error) {
	infos := make(map[string]kmod.Info, len(mods))
	for name, m := range mods {
		infos[name] = m.Info
	}
	var roots []string
	for _, w := range want {
		name := kmod.Normalize(w)
		if _, ok := mods[name]; !ok && builtin[name] {
			log.G(ctx).Debugf("module %s is built into the kernel", name)
			continue
		}
		roots = append(roots, name)
	}
	order, err := kmod.Order(infos, roots)
	if err != nil {
		return nil, fmt.Errorf("order modules: %w", err)
	}
	out := make([]module, len(order))
	for i, name := range order {
		out[i] = mods[name]
	}
	return out, nil
}
