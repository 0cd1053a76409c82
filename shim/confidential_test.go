package shim

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sccontainers/scc/internal/forward"
	"github.com/sccontainers/scc/snapshotter"
)

func TestConfidentialAnnotation(t *testing.T) {
	all := AnnotationPolicy{Enable: []string{`io\.scc\..*`}}
	for _, tc := range []struct {
		name    string
		policy  AnnotationPolicy
		config  bool
		value   string
		want    bool
		wantErr error
	}{
		{name: "pod opts in", policy: all, value: "true", want: true},
		{name: "pod says false", policy: all, value: "false", want: false},
		{name: "already on", policy: all, config: true, value: "true", want: true},
		{name: "cannot opt out", policy: all, config: true, value: "false", wantErr: errdefs.ErrPermissionDenied},
		{name: "not enabled", value: "true", wantErr: errdefs.ErrPermissionDenied},
		{name: "bad value", policy: all, value: "yes please", wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Confidential.Enabled = tc.config
			err := applyAnnotations(&cfg, tc.policy, map[string]string{
				AnnotationConfidential: tc.value,
				// The image annotations describe the container and are
				// never refused.
				AnnotationImage:       "127.0.0.1:5000/app:v1",
				AnnotationImageDigest: "sha256:" + strings.Repeat("ab", 32),
			})
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("applyAnnotations = %v, want %v", err, tc.wantErr)
			}
			if err == nil && cfg.Confidential.Enabled != tc.want {
				t.Errorf("confidential %v, want %v", cfg.Confidential.Enabled, tc.want)
			}
		})
	}
}

func TestConfidentialConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		toml  string
		error string // "" for a valid configuration
	}{
		{"none", "", ""},
		{"full", `[confidential]
enabled = true
registry = "127.0.0.1:5000"
registry_plain_http = true
kbs = "127.0.0.1:8443"
kbs_cert_sha256 = "` + strings.Repeat("0a:", 31) + `0a"
jwe_keys = ["default/image-key/jwe"]
sim_measurement = "` + strings.Repeat("11", 48) + `"
`, ""},
		{"enabled without registry", "[confidential]\nenabled = true\n", "confidential.registry must be set"},
		{"address without port", "[confidential]\nregistry = \"127.0.0.1\"\n", "want host:port"},
		{"short pin", "[confidential]\nkbs_cert_sha256 = \"abcd\"\n", "want 32 hex bytes"},
		{"bad jwe key", "[confidential]\njwe_keys = [\"a/b\"]\n", "want repository/type/tag"},
		{"bad measurement", "[confidential]\nsim_measurement = \"00\"\n", "want 48 hex bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "config.toml")
			if err := os.WriteFile(p, []byte(tc.toml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(p)
			if tc.error == "" && err != nil {
				t.Fatalf("LoadConfig = %v", err)
			}
			if tc.error != "" && (err == nil || !strings.Contains(err.Error(), tc.error)) {
				t.Fatalf("LoadConfig = %v, want an error saying %q", err, tc.error)
			}
		})
	}
}

func TestGuestImage(t *testing.T) {
	simDir := t.TempDir()
	c := ConfidentialConfig{
		Enabled: true, Registry: "127.0.0.1:5000", RegistryPlainHTTP: true, KBS: "127.0.0.1:8443",
		JWEKeys: []string{"default/image-key/jwe"}, SimAuthority: simDir, SimMeasurement: strings.Repeat("11", 48),
	}
	if got := c.targets(); len(got) != 2 || got[forward.TargetRegistry] != c.Registry || got[forward.TargetKBS] != c.KBS {
		t.Errorf("targets %v", got)
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		ref     string
		wantErr error
	}{
		{"scc annotation", map[string]string{AnnotationImage: "r/app:v1", AnnotationImageDigest: digest}, "r/app:v1", nil},
		{"cri image name", map[string]string{criImageName: "r/cri:v2"}, "r/cri:v2", nil},
		{"scc annotation wins", map[string]string{criImageName: "r/cri:v2", AnnotationImage: "r/app:v1"}, "r/app:v1", nil},
		{"no reference", nil, "", errdefs.ErrInvalidArgument},
		{"bad digest", map[string]string{AnnotationImage: "r/app:v1", AnnotationImageDigest: "sha256:12"}, "", errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := c.guestImage(&specs.Spec{Annotations: tc.ann}, nil)
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("guestImage = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if img.Reference != tc.ref || !img.RegistryPlainHttp {
				t.Errorf("image %v", img)
			}
			if tc.ann[AnnotationImageDigest] != "" && img.ManifestDigest != digest {
				t.Errorf("digest %q, want %q", img.ManifestDigest, digest)
			}
			kb := img.KeyBroker
			if len(kb.SimCredentials) == 0 || len(kb.SimMeasurement) != 48 || len(kb.JweKeyResources) != 1 {
				t.Errorf("key broker %v", kb)
			}
		})
	}
	if _, err := (ConfidentialConfig{Enabled: true}).guestImage(&specs.Spec{Annotations: map[string]string{AnnotationImage: "r/a"}}, nil); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("guestImage without a registry = %v, want ErrFailedPrecondition", err)
	}
}

// A container whose rootfs is the snapshotter's placeholder pulls the
// image containerd resolved, pinned, and checks its config.
func TestGuestImageFromHost(t *testing.T) {
	c := ConfidentialConfig{Enabled: true, Registry: "127.0.0.1:5000"}
	host := hostImage{
		name:   "127.0.0.1:5000/app:v1",
		target: digest.Digest("sha256:" + strings.Repeat("aa", 32)),
		config: digest.Digest("sha256:" + strings.Repeat("cc", 32)),
	}
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		ref     string
		wantErr bool
	}{
		{"ctr: containerd's name", nil, host.name, false},
		{"cri image name", map[string]string{criImageName: "127.0.0.1:5000/app:v1"}, "127.0.0.1:5000/app:v1", false},
		{"same pin", map[string]string{AnnotationImageDigest: host.target.String()}, host.name, false},
		{"another pin", map[string]string{AnnotationImageDigest: "sha256:" + strings.Repeat("bb", 32)}, "", true},
		{"another image", map[string]string{AnnotationImage: "127.0.0.1:5000/other:v1"}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := c.guestImage(&specs.Spec{Annotations: tc.ann}, &host)
			if tc.wantErr {
				if !errors.Is(err, errImageMismatch) || !errors.Is(err, errdefs.ErrFailedPrecondition) {
					t.Fatalf("guestImage = %v, want errImageMismatch", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if img.Reference != tc.ref || img.ManifestDigest != host.target.String() || img.ConfigDigest != host.config.String() || !img.LookupGroups {
				t.Errorf("image %v", img)
			}
		})
	}
}

func TestGuestPulledRootfs(t *testing.T) {
	sn, err := snapshotter.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	ctx := namespaces.WithNamespace(context.Background(), "test")
	m, err := sn.Prepare(ctx, "c", "")
	if err != nil {
		t.Fatal(err)
	}
	placeholder := []*types.Mount{{Type: m[0].Type, Source: m[0].Source, Options: m[0].Options}}
	if !guestPulledRootfs(placeholder) {
		t.Error("the snapshotter's rootfs is not recognised")
	}
	for _, rootfs := range [][]*types.Mount{
		nil,
		{{Type: "bind", Source: t.TempDir(), Options: []string{"rbind"}}},
		{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + m[0].Source}}},
		append(placeholder, placeholder[0]),
	} {
		if guestPulledRootfs(rootfs) {
			t.Errorf("%v taken for the snapshotter's rootfs", rootfs)
		}
	}
}
