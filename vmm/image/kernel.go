package image

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/log"
)

// kernelMetaPackage is the Debian package that depends on the current
// versioned kernel image package.
const kernelMetaPackage = "linux-image-amd64"

// resolveKernelPackage returns the versioned kernel package (for example
// linux-image-6.1.0-56-amd64) that meta depends on.
func resolveKernelPackage(ctx context.Context, meta string) (string, error) {
	out, err := run(ctx, "", "apt-cache", "depends", meta)
	if err != nil {
		return "", fmt.Errorf("resolve %s (is `apt-get update` done?): %w", meta, err)
	}
	pkg, err := parseAptDepends(out)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", meta, err)
	}
	return pkg, nil
}

// parseAptDepends picks the first concrete linux-image-* dependency from
// `apt-cache depends` output, whose lines read "  Depends: pkg",
// " |Depends: pkg" or "  Depends: <virtual>".
func parseAptDepends(out []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimLeft(sc.Text(), " |")
		dep, ok := strings.CutPrefix(line, "Depends:")
		if !ok {
			continue
		}
		dep = strings.TrimSpace(dep)
		if strings.HasPrefix(dep, "linux-image-") {
			return dep, nil
		}
	}
	return "", errors.New("no linux-image-* dependency in apt-cache output")
}

// downloadKernel returns the cached .deb of pkg in dir, fetching it with
// `apt-get download` when it is not there yet. The package is never
// installed on the host.
func downloadKernel(ctx context.Context, dir, pkg string) (string, error) {
	if deb, err := cachedDeb(dir, pkg); err != nil || deb != "" {
		return deb, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create kernel cache: %w", err)
	}
	log.G(ctx).WithField("package", pkg).Info("downloading guest kernel package")
	// As root apt-get warns that the download is unsandboxed; harmless here.
	if _, err := run(ctx, dir, "apt-get", "download", pkg); err != nil {
		return "", fmt.Errorf("download %s: %w", pkg, err)
	}
	deb, err := cachedDeb(dir, pkg)
	if err != nil {
		return "", err
	}
	if deb == "" {
		return "", fmt.Errorf("download %s: no %s_*.deb in %s afterwards", pkg, pkg, dir)
	}
	return deb, nil
}

// cachedDeb returns the .deb of pkg in dir, or "" when there is none. With
// several versions cached it takes the last in name order.
func cachedDeb(dir, pkg string) (string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if err != nil {
		return "", fmt.Errorf("look up cached %s: %w", pkg, err)
	}
	if len(matches) == 0 {
		return "", nil
	}
	sort.Strings(matches)
	return matches[len(matches)-1], nil
}

// debVersion returns the Version field of a .deb.
func debVersion(ctx context.Context, deb string) (string, error) {
	out, err := run(ctx, "", "dpkg-deb", "--field", deb, "Version")
	if err != nil {
		return "", fmt.Errorf("read version of %s: %w", deb, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// extractDeb unpacks the files of a .deb into dest.
func extractDeb(ctx context.Context, deb, dest string) error {
	if _, err := run(ctx, "", "dpkg-deb", "--extract", deb, dest); err != nil {
		return fmt.Errorf("extract %s: %w", deb, err)
	}
	return nil
}

// kernelRelease returns the release of the single kernel in an unpacked
// kernel package: the name of its lib/modules directory, which must match a
// boot/vmlinuz-<release>.
func kernelRelease(root string) (string, error) {
	dirs, err := filepath.Glob(filepath.Join(root, "lib/modules/*"))
	if err != nil {
		return "", err
	}
	if len(dirs) != 1 {
		return "", fmt.Errorf("want one kernel in %s/lib/modules, found %d", root, len(dirs))
	}
	release := filepath.Base(dirs[0])
	if _, err := os.Stat(filepath.Join(root, "boot", "vmlinuz-"+release)); err != nil {
		return "", fmt.Errorf("kernel image for %s: %w", release, err)
	}
	return release, nil
}

// run runs a command in dir and returns its standard output; the error
// carries its standard error.
func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}
