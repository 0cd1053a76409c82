package shim

import (
	"context"
	"slices"
	"strings"
	"testing"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// TestDaemonCommandConfig passes the runtime options' configuration to
// the shim daemon: the sandbox API's requests do not carry it.
func TestDaemonCommandConfig(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	t.Setenv(ConfigEnv, "/etc/from-containerd.toml")
	for _, tc := range []struct {
		name string
		opts *runtimeoptions.Options
		want string
	}{
		{"options", &runtimeoptions.Options{ConfigPath: "/etc/scc/pod.toml"}, "/etc/scc/pod.toml"},
		{"no config path", &runtimeoptions.Options{}, "/etc/from-containerd.toml"},
		{"no options", nil, "/etc/from-containerd.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params := &bootapi.BootstrapParams{ContainerdGrpcAddress: "/run/containerd/containerd.sock"}
			if tc.opts != nil {
				if err := params.AddExtension(tc.opts); err != nil {
					t.Fatal(err)
				}
			}
			cmd, err := daemonCommand(ctx, "pod1", params)
			if err != nil {
				t.Fatal(err)
			}
			// The last value of a variable is the one the daemon sees.
			var got string
			for _, kv := range slices.Backward(cmd.Env) {
				if v, ok := strings.CutPrefix(kv, ConfigEnv+"="); ok {
					got = v
					break
				}
			}
			if got != tc.want {
				t.Errorf("%s=%q, want %q", ConfigEnv, got, tc.want)
			}
		})
	}
}
