// Package kmod reads kernel module metadata, orders modules by their
// dependencies and loads them. The host uses it to pick the modules that go
// into the guest initramfs; the guest agent uses it to load them at boot,
// since the guest has no modprobe and Debian's kernel package ships no
// modules.dep.
package kmod

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Info is the part of a module's .modinfo section that ordering needs.
type Info struct {
	// Name is the module name, normalised with Normalize.
	Name string
	// Depends lists the modules whose symbols this one uses, normalised.
	Depends []string
	// SoftPre lists the "softdep=pre:" names, normalised. They may be module
	// names or aliases (libcrc32c wants "crc32c", an alias of crc32c_generic).
	SoftPre []string
	// Aliases lists the module's aliases, normalised.
	Aliases []string
	// Vermagic is the kernel release and options the module was built for.
	Vermagic string
}

// ErrNoModinfo is returned for an ELF file without a .modinfo section.
var ErrNoModinfo = errors.New("no .modinfo section")

// Normalize returns the canonical form of a module name or alias: the kernel
// treats '-' and '_' in module names as the same character.
func Normalize(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// ParseModinfo reads the .modinfo section of an uncompressed kernel module
// (.ko) file.
func ParseModinfo(data []byte) (Info, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return Info{}, fmt.Errorf("parse module elf: %w", err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return Info{}, ErrNoModinfo
	}
	raw, err := sec.Data()
	if err != nil {
		return Info{}, fmt.Errorf("read .modinfo: %w", err)
	}
	return parseModinfoSection(raw)
}

// parseModinfoSection parses the NUL-separated key=value strings of a
// .modinfo section.
func parseModinfoSection(raw []byte) (Info, error) {
	var info Info
	for _, field := range bytes.Split(raw, []byte{0}) {
		key, value, ok := strings.Cut(string(field), "=")
		if !ok {
			continue // alignment padding between strings
		}
		switch key {
		case "name":
			info.Name = Normalize(value)
		case "depends":
			for _, d := range strings.Split(value, ",") {
				if d = strings.TrimSpace(d); d != "" {
					info.Depends = append(info.Depends, Normalize(d))
				}
			}
		case "softdep":
			info.SoftPre = append(info.SoftPre, parseSoftPre(value)...)
		case "alias":
			info.Aliases = append(info.Aliases, Normalize(value))
		case "vermagic":
			info.Vermagic = value
		}
	}
	if info.Name == "" {
		return Info{}, errors.New("parse .modinfo: no name= entry")
	}
	return info, nil
}

// parseSoftPre returns the names after "pre:" in a softdep value such as
// "pre: crc32c post: foo". A bare list without "pre:" or "post:" (some
// modules declare "softdep=sha256") is read as pre: loading a helper too
// early is harmless, loading it too late makes the module's init fail.
func parseSoftPre(value string) []string {
	var pre []string
	inPre := true
	for _, tok := range strings.Fields(value) {
		switch tok {
		case "pre:":
			inPre = true
			continue
		case "post:":
			inPre = false
			continue
		}
		if inPre {
			pre = append(pre, Normalize(tok))
		}
	}
	return pre
}

// isCPUSpecific reports whether the module declares a CPU-feature alias, as
// accelerated implementations do (crc32c_intel needs SSE4.2): loading one on
// a CPU without the feature fails, so a softdep is not resolved to it.
func (i Info) isCPUSpecific() bool {
	for _, a := range i.Aliases {
		if strings.HasPrefix(a, "cpu:") {
			return true
		}
	}
	return false
}

// sortedKeys returns the keys of m in ascending order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
