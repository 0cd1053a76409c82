package nodeinstall

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"

	"github.com/sccontainers/scc/snapshotter"
)

const configV2 = `version = 2
root = "/var/lib/containerd"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.10"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = true
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
        runtime_type = "io.containerd.kata.v2"
`

const configV3 = `version = 3

[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = 'runc'

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'
`

// configV4NoNewline ends without a newline, which install must restore.
const configV4NoNewline = `version = 4
[plugins."io.containerd.grpc.v1.grpc"]
  address = "/run/containerd/containerd.sock"`

var testRuntime = RuntimeOptions{ShimPath: "/usr/local/bin/containerd-shim-scc-v2", ConfigPath: "/etc/scc/config.toml"}

func TestAddRemoveRuntime(t *testing.T) {
	for _, tc := range []struct {
		name    string
		orig    string
		exists  bool
		opts    RuntimeOptions
		plugin  string // where the runtime must be
		version int64  // the result's version
	}{
		{"version 2 with other runtimes", configV2, true, testRuntime, criPluginV2, 2},
		{"version 3", configV3, true, testRuntime, criPluginV3, 3},
		{"version 4 without final newline", configV4NoNewline, true, testRuntime, criPluginV3, 4},
		{"no file", "", false, testRuntime, criPluginV2, 2},
		{"no file, version 3 asked", "", false, RuntimeOptions{ShimPath: testRuntime.ShimPath, ConfigPath: testRuntime.ConfigPath, NewVersion: 3}, criPluginV3, 3},
		{"empty file", "", true, testRuntime, criPluginV2, 2},
		{"comments only", "# managed by hand\n", true, testRuntime, criPluginV2, 2},
		{"existing version ignores the asked one", configV3, true, RuntimeOptions{ConfigPath: "/etc/scc/config.toml", NewVersion: 2}, criPluginV3, 3},
		{"sandboxer", configV3, true, RuntimeOptions{ShimPath: testRuntime.ShimPath, ConfigPath: testRuntime.ConfigPath, Sandboxer: SandboxerShim}, criPluginV3, 3},
		{"sandboxer, version 4", configV4NoNewline, true, RuntimeOptions{ConfigPath: testRuntime.ConfigPath, Sandboxer: SandboxerShim}, criPluginV3, 4},
		{"sandboxer, no file", "", false, RuntimeOptions{ConfigPath: testRuntime.ConfigPath, NewVersion: 3, Sandboxer: SandboxerShim}, criPluginV3, 3},
		{"podsandbox named", configV3, true, RuntimeOptions{ConfigPath: testRuntime.ConfigPath, Sandboxer: "podsandbox"}, criPluginV3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := AddRuntime([]byte(tc.orig), tc.exists, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			checkLoads(t, out, tc.plugin, tc.version, tc.opts)
			if got, want := len(otherRuntimes(out, tc.plugin)), len(otherRuntimes([]byte(tc.orig), tc.plugin)); got != want {
				t.Errorf("%d other runtimes, want %d", got, want)
			}
			if len(out) < len(tc.orig) || string(out[:len(tc.orig)]) != tc.orig {
				t.Error("the original config is not kept as it was at the start of the file")
			}

			again, err := AddRuntime(out, true, tc.opts)
			if err != nil {
				t.Fatalf("second install: %v", err)
			}
			if string(again) != string(out) {
				t.Errorf("second install changed the config:\n%s\nthen\n%s", out, again)
			}

			back, created, found, err := RemoveRuntime(out)
			if err != nil {
				t.Fatal(err)
			}
			if !found {
				t.Fatal("block not found")
			}
			if created != !tc.exists {
				t.Errorf("created = %v for a file that existed = %v", created, tc.exists)
			}
			if string(back) != tc.orig {
				t.Errorf("uninstall gave\n%q\nwant\n%q", back, tc.orig)
			}
		})
	}
}

// checkLoads loads cfg with containerd's own config loader and checks the
// runtime handler is where the CRI plugin of that version looks for it.
func checkLoads(t *testing.T, cfg []byte, plugin string, version int64, o RuntimeOptions) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	var c srvconfig.Config
	if err := srvconfig.LoadConfig(context.Background(), p, &c); err != nil {
		t.Fatalf("containerd does not load the config: %v\n%s", err, cfg)
	}
	if int64(c.Version) != version {
		t.Errorf("version %d, want %d", c.Version, version)
	}
	rt, ok := lookup(map[string]any{"plugins": c.Plugins}, runtimePath(plugin, RuntimeName)...)
	if !ok {
		t.Fatalf("no runtime %s in plugin %s:\n%s", RuntimeName, plugin, cfg)
	}
	m := rt.(map[string]any)
	if m["runtime_type"] != RuntimeType {
		t.Errorf("runtime_type %v", m["runtime_type"])
	}
	if o.ShimPath != "" && m["runtime_path"] != o.ShimPath {
		t.Errorf("runtime_path %v, want %s", m["runtime_path"], o.ShimPath)
	}
	if ann, _ := m["pod_annotations"].([]any); len(ann) != 1 || ann[0] != "io.scc.*" {
		t.Errorf("pod_annotations %v", m["pod_annotations"])
	}
	if got, _ := lookup(m, "options", "ConfigPath"); got != o.ConfigPath {
		t.Errorf("options.ConfigPath %v, want %s", got, o.ConfigPath)
	}
	if got, _ := m["sandboxer"].(string); o.Sandboxer == SandboxerShim && got != SandboxerShim || o.Sandboxer != SandboxerShim && got != "" {
		t.Errorf("sandboxer %q, want %q", got, o.Sandboxer)
	}
	// The runtimes that were there stay.
	for _, name := range otherRuntimes(cfg, plugin) {
		if _, ok := lookup(map[string]any{"plugins": c.Plugins}, "plugins", plugin, "containerd", "runtimes", name, "runtime_type"); !ok {
			t.Errorf("runtime %s lost", name)
		}
	}
}

// otherRuntimes names the runtimes of cfg's CRI plugin other than scc.
func otherRuntimes(cfg []byte, plugin string) []string {
	doc, _ := parseTOML(cfg)
	rts, _ := lookup(doc, "plugins", plugin, "containerd", "runtimes")
	m, _ := rts.(map[string]any)
	var names []string
	for n := range m {
		if n != RuntimeName {
			names = append(names, n)
		}
	}
	return names
}

func TestAddRuntimeUpdatesItsBlock(t *testing.T) {
	out, err := AddRuntime([]byte(configV3), true, testRuntime)
	if err != nil {
		t.Fatal(err)
	}
	moved := testRuntime
	moved.ConfigPath = "/opt/scc/config.toml"
	again, err := AddRuntime(out, true, moved)
	if err != nil {
		t.Fatal(err)
	}
	checkLoads(t, again, criPluginV3, 3, moved)
	back, _, _, err := RemoveRuntime(again)
	if err != nil {
		t.Fatal(err)
	}
	if string(back) != configV3 {
		t.Errorf("uninstall after an update gave\n%s", back)
	}
}

// TestRemoveRuntimeKeepsLaterEdits checks that uninstall removes only the
// block when the rest of the file was edited while scc was installed.
func TestRemoveRuntimeKeepsLaterEdits(t *testing.T) {
	out, err := AddRuntime([]byte(configV3), true, testRuntime)
	if err != nil {
		t.Fatal(err)
	}
	edited := "# edited\n" + string(out) + "\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = 'native'\n"
	back, _, found, err := RemoveRuntime([]byte(edited))
	if err != nil || !found {
		t.Fatalf("found %v, error %v", found, err)
	}
	want := "# edited\n" + configV3 + "\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = 'native'\n"
	if string(back) != want {
		t.Errorf("got\n%s\nwant\n%s", back, want)
	}
}

func TestAddRuntimeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		orig string
		want error
	}{
		{"not TOML", "version = 2\n[plugins\n", ErrInvalidConfig},
		{"duplicate table", "version = 2\n[a]\nx = 1\n[a]\nx = 2\n", ErrInvalidConfig},
		{"version 1", "root = \"/var/lib/containerd\"\n[plugins.cri]\n", ErrUnsupportedVersion},
		{"version 5", "version = 5\n", ErrUnsupportedVersion},
		{"version not a number", "version = \"2\"\n", ErrInvalidConfig},
		{"scc defined by hand", configV3 + "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.scc]\n  runtime_type = 'io.containerd.scc.v2'\n", ErrConflict},
		{"runtimes as an inline table", "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd]\n  runtimes = { runc = { runtime_type = 'io.containerd.runc.v2' } }\n", ErrInvalidConfig},
		{"block without end", configV3 + "\n" + blockBegin + "\n[x]\n", ErrInvalidConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := AddRuntime([]byte(tc.orig), true, testRuntime)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v; config:\n%s", err, tc.want, out)
			}
		})
	}
}

func TestAddRuntimeSandboxerRefused(t *testing.T) {
	for _, tc := range []struct {
		name, orig, sandboxer string
		want                  error
	}{
		{"version 2", configV2, SandboxerShim, ErrUnsupportedVersion},
		{"new version 2 file", "", SandboxerShim, ErrUnsupportedVersion},
		{"unknown", configV3, "vm", ErrInvalidConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testRuntime
			o.Sandboxer = tc.sandboxer
			if out, err := AddRuntime([]byte(tc.orig), tc.orig != "", o); !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v; config:\n%s", err, tc.want, out)
			}
		})
	}
}

func TestAddRuntimeQuotesPaths(t *testing.T) {
	o := RuntimeOptions{ShimPath: `/opt/s"c\c/shim`, ConfigPath: "/etc/scc/config.toml"}
	out, err := AddRuntime(nil, false, o)
	if err != nil {
		t.Fatal(err)
	}
	checkLoads(t, out, criPluginV2, 2, o)
	if _, err := AddRuntime(nil, false, RuntimeOptions{ConfigPath: "/etc/scc\n/x"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("a path with a newline: error %v", err)
	}
}

func TestCRIDisabled(t *testing.T) {
	for cfg, want := range map[string]bool{
		configV2: false,
		"version = 2\ndisabled_plugins = [\"cri\"]\n":                              true,
		"version = 3\ndisabled_plugins = [\"io.containerd.cri.v1.runtime\"]\n":     true,
		"version = 2\ndisabled_plugins = [\"io.containerd.snapshotter.v1.zfs\"]\n": false,
	} {
		if got := CRIDisabled([]byte(cfg)); got != want {
			t.Errorf("%q: %v, want %v", cfg, got, want)
		}
	}
}

// checkConfidential loads cfg with containerd's config loader and checks
// the confidential handler, the snapshotter's proxy plugin and the
// transfer service's unpack entries, by snapshotter (wantUnpack).
func checkConfidential(t *testing.T, cfg []byte, plugin, configPath string, wantUnpack []string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	var c srvconfig.Config
	if err := srvconfig.LoadConfig(context.Background(), p, &c); err != nil {
		t.Fatalf("containerd does not load the config: %v\n%s", err, cfg)
	}
	rt, ok := lookup(map[string]any{"plugins": c.Plugins}, runtimePath(plugin, ConfidentialRuntimeName)...)
	if !ok {
		t.Fatalf("no runtime %s:\n%s", ConfidentialRuntimeName, cfg)
	}
	m := rt.(map[string]any)
	if m["snapshotter"] != snapshotter.Name || m["runtime_type"] != RuntimeType {
		t.Errorf("runtime %s: %v", ConfidentialRuntimeName, m)
	}
	if got, _ := lookup(m, "options", "ConfigPath"); got != configPath {
		t.Errorf("options.ConfigPath %v, want %s", got, configPath)
	}
	pp, ok := c.ProxyPlugins[snapshotter.Name]
	if !ok || pp.Type != "snapshot" || pp.Address != snapshotter.DefaultAddress || pp.Exports["enable_remote_snapshot_annotations"] != "true" {
		t.Errorf("proxy plugin %s: %+v (present %v)", snapshotter.Name, pp, ok)
	}
	entries, _ := lookup(map[string]any{"plugins": c.Plugins}, "plugins", transferPlugin, "unpack_config")
	list, _ := entries.([]any)
	var sns []string
	for _, e := range list {
		sns = append(sns, fmt.Sprint(e.(map[string]any)["snapshotter"]))
	}
	if !slices.Equal(sns, wantUnpack) {
		t.Errorf("unpack_config snapshotters %v, want %v", sns, wantUnpack)
	}
}

func TestAddRuntimeConfidential(t *testing.T) {
	withUnpack := configV3 + "\n[[plugins.'io.containerd.transfer.v1.local'.unpack_config]]\n  platform = 'linux/amd64'\n  snapshotter = 'native'\n"
	o := testRuntime
	o.Confidential = &ConfidentialOptions{ConfigPath: "/etc/scc/confidential.toml", Platform: "linux/amd64"}
	for _, tc := range []struct {
		name   string
		orig   string
		plugin string
		unpack []string
	}{
		{"version 2", configV2, criPluginV2, []string{"overlayfs", snapshotter.Name}},
		{"version 3", configV3, criPluginV3, []string{"overlayfs", snapshotter.Name}},
		// The administrator's entries stay, first.
		{"own unpack list", withUnpack, criPluginV3, []string{"native", snapshotter.Name}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := AddRuntime([]byte(tc.orig), true, o)
			if err != nil {
				t.Fatal(err)
			}
			checkConfidential(t, out, tc.plugin, o.Confidential.ConfigPath, tc.unpack)
			again, err := AddRuntime(out, true, o)
			if err != nil || string(again) != string(out) {
				t.Errorf("second install: %v, changed: %v", err, string(again) != string(out))
			}
			// Installing again without the handler takes it out.
			plain, err := AddRuntime(out, true, testRuntime)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(plain), "proxy_plugins") || strings.Contains(string(plain), ConfidentialRuntimeName) {
				t.Errorf("the confidential handler stays:\n%s", plain)
			}
			back, _, _, err := RemoveRuntime(out)
			if err != nil || string(back) != tc.orig {
				t.Errorf("uninstall gave %q, %v", back, err)
			}
		})
	}
	for name, orig := range map[string]string{
		"proxy plugin defined by hand":   configV3 + "[proxy_plugins.scc]\n  type = 'snapshot'\n  address = '/x'\n",
		"handler defined by hand":        configV3 + "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.scc-confidential]\n  runtime_type = 'io.containerd.scc.v2'\n",
		"unpack list as an inline array": configV3 + "[plugins.'io.containerd.transfer.v1.local']\n  unpack_config = [{platform = 'linux/amd64', snapshotter = 'overlayfs'}]\n",
	} {
		t.Run(name, func(t *testing.T) {
			if out, err := AddRuntime([]byte(orig), true, o); !errors.Is(err, ErrConflict) && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v; config:\n%s", err, out)
			}
		})
	}
}
