package nodeinstall

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/containerd/platforms"
	"github.com/pelletier/go-toml/v2"

	"github.com/sccontainers/scc/snapshotter"
)

// RuntimeName is the CRI runtime handler scc adds to containerd: the
// handler a RuntimeClass names.
const RuntimeName = "scc"

// RuntimeType is the shim v2 runtime type; containerd resolves it to the
// binary containerd-shim-scc-v2.
const RuntimeType = "io.containerd.scc.v2"

// ConfidentialRuntimeName is the CRI runtime handler of confidential
// containers that install adds on request: scc with scc's snapshotter, so
// that containerd leaves the images' layers to the guests.
const ConfidentialRuntimeName = "scc-confidential"

// transferPlugin is containerd's transfer service, through which
// containerd 2.x's CRI pulls: it unpacks only into the snapshotters of its
// unpack_config.
const transferPlugin = "io.containerd.transfer.v1.local"

// SandboxerShim is the sandbox controller ("sandboxer") of containerd's
// CRI that makes the shim the pod's sandboxer, through containerd's
// sandbox API: no pause container. CRI's default, "podsandbox", runs one
// for each pod.
const SandboxerShim = "shim"

// PodAnnotations are the pod annotations containerd passes through to the
// shim (path.Match patterns); the shim's own allow-list decides which of
// them take effect.
var PodAnnotations = []string{"io.scc.*"}

// The CRI runtime plugin of each containerd config version: version 2
// (containerd 1.x, also read by 2.x) has it in the CRI plugin, versions 3
// and 4 (containerd 2.x) in its own runtime plugin.
const (
	criPluginV2 = "io.containerd.grpc.v1.cri"
	criPluginV3 = "io.containerd.cri.v1.runtime"
)

// The lines around what install adds to the containerd config. Uninstall
// removes exactly from the line before blockBegin (a newline install put
// there) to the end of blockEnd's line, which gives back the bytes the
// file had, whatever else was edited since outside the block.
const (
	blockBegin   = `# >>> scc runtime: added by "scc install", removed by "scc uninstall"; edit outside this block >>>`
	blockCreated = `# (scc install created this file)`
	blockEnd     = `# <<< scc runtime <<<`
)

var (
	// ErrInvalidConfig is returned for a containerd config that does not
	// parse, or that the scc runtime cannot be added to.
	ErrInvalidConfig = errors.New("invalid containerd config")
	// ErrUnsupportedVersion is returned for config versions other than 2,
	// 3 and 4 (a config without version is version 1).
	ErrUnsupportedVersion = errors.New("unsupported containerd config version")
	// ErrConflict is returned when the config already has an scc runtime
	// that install did not add.
	ErrConflict = errors.New("conflicting containerd config")
)

// RuntimeOptions are what the scc runtime entry says.
type RuntimeOptions struct {
	// ShimPath is the host path of containerd-shim-scc-v2 (runtime_path),
	// so containerd finds it whatever its PATH.
	ShimPath string
	// ConfigPath is the host path of the shim's config.toml.
	ConfigPath string
	// NewVersion is the config version written into a config that has
	// none yet (a new or empty file): 2 (default; read by containerd 1.7
	// and 2.x) or 3.
	NewVersion int
	// Sandboxer is the handler's sandbox controller: "" or "podsandbox"
	// (CRI's default, a pause container per pod) or SandboxerShim, which
	// needs containerd 2.x and a config of version 3 or 4.
	Sandboxer string
	// Confidential, when set, also adds the ConfidentialRuntimeName
	// handler, scc's snapshotter as a proxy plugin, and that snapshotter
	// to the transfer service's unpack configuration.
	Confidential *ConfidentialOptions
}

// ConfidentialOptions describe the confidential runtime handler.
type ConfidentialOptions struct {
	// ConfigPath is the host path of its shim configuration, which must
	// make every container confidential ([confidential] enabled = true).
	ConfigPath string
	// SnapshotterAddress is the socket scc snapshotter serves
	// (snapshotter.DefaultAddress if empty).
	SnapshotterAddress string
	// Platform is the platform of the transfer service's unpack entries
	// (platforms.DefaultString() if empty).
	Platform string
}

// AddRuntime returns the containerd config cur with the scc runtime handler
// added in a marked block at its end. cur may already hold such a block (a
// previous install): it is replaced, so installing again with the same
// options returns cur unchanged. exists tells whether the file exists; a
// file install creates is deleted by uninstall. Nothing else in cur is
// rewritten. A config that does not parse, has an unsupported version, or
// defines an scc runtime of its own is refused.
func AddRuntime(cur []byte, exists bool, o RuntimeOptions) ([]byte, error) {
	base, created, found, err := stripBlock(cur)
	if err != nil {
		return nil, err
	}
	created = created || !exists
	doc, err := parseTOML(base)
	if err != nil {
		return nil, err
	}
	newVersion := o.NewVersion
	if found && newVersion == 0 {
		// A version the previous block set stays, unless asked otherwise.
		if prev, err := parseTOML(cur); err == nil {
			if v, ok := prev["version"].(int64); ok {
				newVersion = int(v)
			}
		}
	}
	version, setVersion, err := configVersion(doc, newVersion)
	if err != nil {
		return nil, err
	}
	switch o.Sandboxer {
	case "", "podsandbox":
	case SandboxerShim:
		if version < 3 {
			return nil, fmt.Errorf("sandboxer %q needs containerd 2.x and its config version 3 or 4, not %d (containerd config migrate): %w", o.Sandboxer, version, ErrUnsupportedVersion)
		}
	default:
		return nil, fmt.Errorf("sandboxer %q: want podsandbox or %s: %w", o.Sandboxer, SandboxerShim, ErrInvalidConfig)
	}
	plugin := criPlugin(version)
	if _, ok := lookup(doc, runtimePath(plugin, RuntimeName)...); ok {
		return nil, fmt.Errorf("runtime %q is already defined outside the block scc install manages; remove it first: %w", RuntimeName, ErrConflict)
	}
	// The transfer service's default unpack entry is replaced by any
	// list: the block then writes it too.
	_, hasUnpack := lookup(doc, "plugins", transferPlugin, "unpack_config")
	if o.Confidential != nil {
		if _, ok := lookup(doc, runtimePath(plugin, ConfidentialRuntimeName)...); ok {
			return nil, fmt.Errorf("runtime %q is already defined outside the block scc install manages; remove it first: %w", ConfidentialRuntimeName, ErrConflict)
		}
		if _, ok := lookup(doc, "proxy_plugins", snapshotter.Name); ok {
			return nil, fmt.Errorf("proxy plugin %q is already defined outside the block scc install manages; remove it first: %w", snapshotter.Name, ErrConflict)
		}
	}
	block, err := runtimeBlock(plugin, o, created, setVersion, version, hasUnpack)
	if err != nil {
		return nil, err
	}
	out := append(slices.Clip(base), block...)
	// The block is only appended: check that the result still parses and
	// holds the runtime, which fails when the existing file defines the
	// same tables in a form that cannot be extended (inline tables).
	after, err := parseTOML(out)
	if err != nil {
		return nil, fmt.Errorf("cannot add the scc runtime to this config: %w", err)
	}
	if rt, _ := lookup(after, runtimePath(plugin, RuntimeName)...); rt == nil {
		return nil, fmt.Errorf("cannot add the scc runtime to this config: the runtime table is not where containerd looks: %w", ErrInvalidConfig)
	}
	if o.Confidential != nil {
		if rt, _ := lookup(after, runtimePath(plugin, ConfidentialRuntimeName)...); rt == nil {
			return nil, fmt.Errorf("cannot add the %s runtime to this config: the runtime table is not where containerd looks: %w", ConfidentialRuntimeName, ErrInvalidConfig)
		}
	}
	return out, nil
}

// RemoveRuntime removes what AddRuntime added. It returns the config
// without the block, whether install had created the file (so it is to be
// deleted once empty), and whether there was a block at all.
func RemoveRuntime(cur []byte) (out []byte, created, found bool, err error) {
	return stripBlock(cur)
}

// stripBlock cuts every scc block out of b.
func stripBlock(b []byte) (out []byte, created, found bool, err error) {
	out = b
	for {
		begin := bytes.Index(out, []byte(blockBegin))
		if begin < 0 {
			return out, created, found, nil
		}
		if begin > 0 && out[begin-1] != '\n' {
			return nil, false, false, fmt.Errorf("scc block marker not at the start of a line: %w", ErrInvalidConfig)
		}
		rest := out[begin:]
		end := bytes.Index(rest, []byte(blockEnd))
		if end < 0 {
			return nil, false, false, fmt.Errorf("scc block has no end marker %q: %w", blockEnd, ErrInvalidConfig)
		}
		end += begin + len(blockEnd)
		if end < len(out) && out[end] == '\n' {
			end++
		}
		if bytes.Contains(out[begin:end], []byte(blockCreated)) {
			created = true
		}
		// The newline before the marker is the one install added.
		if begin > 0 {
			begin--
		}
		out = slices.Concat(out[:begin], out[end:])
		found = true
	}
}

// runtimeBlock is the text install appends. It always starts with a
// newline: it ends a last line without one, or leaves a blank line.
func runtimeBlock(plugin string, o RuntimeOptions, created, setVersion bool, version int, hasUnpack bool) ([]byte, error) {
	shim, err := tomlString(o.ShimPath)
	if err != nil {
		return nil, fmt.Errorf("runtime_path: %w", err)
	}
	cfg, err := tomlString(o.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("ConfigPath: %w", err)
	}
	var ann []string
	for _, a := range PodAnnotations {
		q, err := tomlString(a)
		if err != nil {
			return nil, err
		}
		ann = append(ann, q)
	}
	var b strings.Builder
	b.WriteString("\n" + blockBegin + "\n")
	if created {
		b.WriteString(blockCreated + "\n")
	}
	if setVersion {
		fmt.Fprintf(&b, "version = %d\n", version)
	}
	runtime := func(name, snapshotter, sandboxer, cfg string) {
		table := fmt.Sprintf("plugins.%q.containerd.runtimes.%s", plugin, name)
		fmt.Fprintf(&b, "[%s]\n", table)
		fmt.Fprintf(&b, "  runtime_type = %q\n", RuntimeType)
		if o.ShimPath != "" {
			fmt.Fprintf(&b, "  runtime_path = %s\n", shim)
		}
		fmt.Fprintf(&b, "  pod_annotations = [%s]\n", strings.Join(ann, ", "))
		// Host devices mean nothing inside the VM: a privileged pod gets
		// the guest's devices, not the host's.
		b.WriteString("  privileged_without_host_devices = true\n")
		if snapshotter != "" {
			fmt.Fprintf(&b, "  snapshotter = %q\n", snapshotter)
		}
		if sandboxer == SandboxerShim {
			// The shim serves containerd's sandbox API: no pause container.
			fmt.Fprintf(&b, "  sandboxer = %q\n", SandboxerShim)
		}
		fmt.Fprintf(&b, "  [%s.options]\n", table)
		fmt.Fprintf(&b, "    ConfigPath = %s\n", cfg)
	}
	runtime(RuntimeName, "", o.Sandboxer, cfg)
	if c := o.Confidential; c != nil {
		if err := confidentialBlock(&b, *c, hasUnpack, runtime); err != nil {
			return nil, err
		}
	}
	b.WriteString(blockEnd + "\n")
	return []byte(b.String()), nil
}

// confidentialBlock writes the confidential handler, scc's snapshotter
// as a proxy plugin, and the transfer service's unpack entries: the
// default one (overlayfs), unless the config has a list of its own, and
// one for scc's snapshotter.
func confidentialBlock(b *strings.Builder, c ConfidentialOptions, hasUnpack bool, runtime func(name, snapshotter, sandboxer, cfg string)) error {
	if c.SnapshotterAddress == "" {
		c.SnapshotterAddress = snapshotter.DefaultAddress
	}
	if c.Platform == "" {
		c.Platform = platforms.DefaultString()
	}
	addr, err := tomlString(c.SnapshotterAddress)
	if err != nil {
		return fmt.Errorf("snapshotter address: %w", err)
	}
	cfg, err := tomlString(c.ConfigPath)
	if err != nil {
		return fmt.Errorf("confidential ConfigPath: %w", err)
	}
	platform, err := tomlString(c.Platform)
	if err != nil {
		return fmt.Errorf("platform: %w", err)
	}
	runtime(ConfidentialRuntimeName, snapshotter.Name, "", cfg)
	fmt.Fprintf(b, "[proxy_plugins.%s]\n", snapshotter.Name)
	b.WriteString("  type = \"snapshot\"\n")
	fmt.Fprintf(b, "  address = %s\n", addr)
	// The transfer service passes the image's digests to the
	// snapshotter only when it asks for them.
	fmt.Fprintf(b, "  [proxy_plugins.%s.exports]\n", snapshotter.Name)
	b.WriteString("    enable_remote_snapshot_annotations = \"true\"\n")
	unpack := fmt.Sprintf("[[plugins.%q.unpack_config]]\n", transferPlugin)
	if !hasUnpack {
		b.WriteString(unpack)
		fmt.Fprintf(b, "  platform = %s\n  snapshotter = \"overlayfs\"\n  differ = \"walking\"\n", platform)
	}
	b.WriteString(unpack)
	fmt.Fprintf(b, "  platform = %s\n  snapshotter = %q\n", platform, snapshotter.Name)
	return nil
}

// configVersion returns the config's version, or newVersion (and true:
// the block must set it) for a config without any key.
func configVersion(doc map[string]any, newVersion int) (int, bool, error) {
	v, ok := doc["version"]
	if !ok {
		if len(doc) > 0 {
			return 0, false, fmt.Errorf("config has no version, so it is version 1; migrate it first (containerd config migrate): %w", ErrUnsupportedVersion)
		}
		if newVersion == 0 {
			newVersion = 2
		}
		if newVersion < 2 || newVersion > 4 {
			return 0, false, fmt.Errorf("version %d for a new config: %w", newVersion, ErrUnsupportedVersion)
		}
		return newVersion, true, nil
	}
	n, ok := v.(int64)
	if !ok {
		return 0, false, fmt.Errorf("version is %v, not an integer: %w", v, ErrInvalidConfig)
	}
	if n < 2 || n > 4 {
		return 0, false, fmt.Errorf("version %d (scc supports 2, 3 and 4): %w", n, ErrUnsupportedVersion)
	}
	return int(n), false, nil
}

func criPlugin(version int) string {
	if version == 2 {
		return criPluginV2
	}
	return criPluginV3
}

func runtimePath(plugin, name string) []string {
	return []string{"plugins", plugin, "containerd", "runtimes", name}
}

// CRIDisabled reports whether the config disables the CRI plugin that the
// runtime is added to, in which case Kubernetes cannot use it (Docker's
// packaged config does this).
func CRIDisabled(cfg []byte) bool {
	doc, err := parseTOML(cfg)
	if err != nil {
		return false
	}
	list, _ := doc["disabled_plugins"].([]any)
	for _, p := range list {
		switch p {
		case "cri", criPluginV2, criPluginV3:
			return true
		}
	}
	return false
}

func parseTOML(b []byte) (map[string]any, error) {
	doc := map[string]any{}
	if err := toml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parse: %v: %w", err, ErrInvalidConfig)
	}
	return doc, nil
}

// lookup follows keys through nested tables.
func lookup(doc map[string]any, keys ...string) (any, bool) {
	var cur any = doc
	for _, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// tomlString quotes s as a TOML basic string. Control characters are
// refused rather than escaped: no path install writes has them.
func tomlString(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%q is not UTF-8: %w", s, ErrInvalidConfig)
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			return "", fmt.Errorf("%q has control characters: %w", s, ErrInvalidConfig)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}
