package ctrd

import (
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cri     *CRIOptions
		want    []string
		notWant []string
	}{
		{"plain", nil, []string{`"io.containerd.grpc.v1.cri",`, `root = "/x/root"`}, []string{"runtimes.scc"}},
		{"cri", &CRIOptions{SCCConfig: "/x/scc.toml", SandboxImage: "scc.local/pause:1"},
			[]string{`ConfigPath = "/x/scc.toml"`, `sandbox = "scc.local/pause:1"`, `runtime_type = "io.containerd.scc.v2"`},
			[]string{`"io.containerd.grpc.v1.cri",`, "proxy_plugins", "sandboxer"}},
		{"guest pull", &CRIOptions{SCCConfig: "/x/scc.toml", SandboxImage: "scc.local/pause:1",
			GuestPull: &GuestPullHandler{Name: "scc-cc", SCCConfig: "/x/cc.toml", SnapshotterAddress: "/x/sn.sock"}},
			[]string{`[proxy_plugins.scc]`, `address = "/x/sn.sock"`, `runtimes.scc-cc]`, `snapshotter = "scc"`, `ConfigPath = "/x/cc.toml"`, `enable_remote_snapshot_annotations = "true"`},
			nil},
		{"sandboxer", &CRIOptions{SCCConfig: "/x/scc.toml", SandboxImage: "scc.local/pause:1", Sandboxer: "shim"},
			[]string{`sandboxer = "shim"`, `disable_pause_image_pull = true`, `ConfigPath = "/x/scc.toml"`},
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Config("/x", tc.cri)
			if err != nil {
				t.Fatal(err)
			}
			var v map[string]any
			if err := toml.Unmarshal([]byte(cfg), &v); err != nil {
				t.Fatalf("not TOML: %v\n%s", err, cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(cfg, w) {
					t.Errorf("config lacks %s", w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(cfg, w) {
					t.Errorf("config has %s", w)
				}
			}
		})
	}
}
