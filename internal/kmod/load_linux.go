package kmod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Load inserts the uncompressed kernel module at path with finit_module(2),
// passing params (for example "debug=1 foo=bar"). A module that is already
// loaded is not an error.
func Load(path string, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), params, 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	return nil
}

// LoadList loads the modules named in listFile, in the order given. Both
// listFile and the entries are paths relative to root ("/" in the guest):
// one module file per line, optionally followed by whitespace and module
// parameters. Blank lines and lines starting with '#' are skipped. Every
// entry is tried; the failures are returned together, since a module that
// fails may leave the rest usable.
func LoadList(ctx context.Context, root string, listFile string) error {
	data, err := os.ReadFile(filepath.Join(root, listFile))
	if err != nil {
		return fmt.Errorf("read module list: %w", err)
	}
	entries, err := parseList(data)
	if err != nil {
		return fmt.Errorf("parse module list %s: %w", listFile, err)
	}
	var errs []error
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := Load(filepath.Join(root, e.path), e.params); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
