package tests

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sccontainers/scc/imagesplit"
	"github.com/sccontainers/scc/imagesplit/layercrypt"
	"github.com/sccontainers/scc/internal/forward"
	"github.com/sccontainers/scc/internal/guestpull"
	"github.com/sccontainers/scc/shim"
)

// confidentialEnv is what the confidential-container tests share: a real
// registry and an scc-kbs on 127.0.0.1. The first test that needs them
// starts them; they go with the test process.
var confidentialEnv struct {
	once     sync.Once
	err      error
	registry *guestpull.Registry
	broker   *guestpull.Broker
}

func setupConfidential(t *testing.T) {
	t.Helper()
	e := &confidentialEnv
	e.once.Do(func() {
		dir := filepath.Join(env.dir, "confidential")
		bin := os.Getenv("REGISTRY")
		if bin == "" {
			bin = "/var/cache/scc/tools/bin/registry"
		}
		if e.registry, e.err = guestpull.StartRegistry(context.Background(), bin, filepath.Join(dir, "registry")); e.err != nil {
			e.err = fmt.Errorf("%w (make tools builds the registry)", e.err)
			return
		}
		e.broker, e.err = guestpull.StartBroker(context.Background(), dir)
	})
	if e.err != nil {
		t.Fatalf("confidential services: %v", e.err)
	}
}

func pushSecretImage(t *testing.T, repo string, rule imagesplit.Rule, rcpts ...layercrypt.Recipient) guestpull.SecretImage {
	t.Helper()
	si, err := guestpull.PushSecretImage(context.Background(), guestpull.ImageOptions{
		Busybox: "/bin/busybox", Registry: confidentialEnv.registry.Addr, Repo: repo,
		Rule: rule, Recipients: rcpts, WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return si
}

// confidentialConfig writes a runtime configuration whose containers may
// be made confidential by annotation, pull from the test registry and get
// keys from the test broker, attesting with the simulated TEE.
func confidentialConfig(t *testing.T, measurement [48]byte) string {
	t.Helper()
	cfg := fmt.Sprintf(`state_dir = %q
guest_dir = %q
enable_annotations = ['io\.scc\.confidential']

[snapshot]
enabled = false
dir = %q

[vm]
log_dir = %q
boot_timeout = "90s"
kernel_params = [%q]

`, env.run, guestDir(), filepath.Join(env.dir, "snapshots"), env.logs, guestpull.SimKernelParam) +
		confidentialEnv.broker.ShimConfig(confidentialEnv.registry.Addr, measurement, false)
	p := filepath.Join(t.TempDir(), "confidential.toml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runConfidential runs `cat /secret.txt` in a confidential container of
// image si and returns its output, the channel's byte counts read while
// the container still ran, ctr's stderr and exit code.
func runConfidential(t *testing.T, ctx context.Context, cfg, id string, si guestpull.SecretImage) (string, map[string]forward.TargetStats, string, int) {
	t.Helper()
	cmd := env.ctrd.Ctr(ctx, "run", "--rm", "--runtime", runtimeName, "--runtime-config-path", cfg,
		"--annotation", shim.AnnotationConfidential+"=true",
		"--annotation", shim.AnnotationImage+"="+si.Ref,
		"--annotation", shim.AnnotationImageDigest+"="+si.Digest.String(),
		imageRef, id, "sh", "-c", "cat /secret.txt; read x")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	var stats map[string]forward.TargetStats
	if line != "" {
		stats = readForwardStats(t, id)
	}
	stdin.Write([]byte("\n"))
	stdin.Close()
	io.Copy(io.Discard, stdout)
	code := 0
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("ctr run: %v", err)
		}
		code = ee.ExitCode()
	}
	return strings.TrimSpace(line), stats, stderr.String(), code
}

// readForwardStats reads the sandbox's channel counts once the registry
// streams have ended (the guest closes them after its pull).
func readForwardStats(t *testing.T, id string) map[string]forward.TargetStats {
	t.Helper()
	path := filepath.Join(env.run, id, shim.ForwardStatsName)
	var stats map[string]forward.TargetStats
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &stats) == nil && stats[forward.TargetRegistry].FromTarget > 0 {
			return stats
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("no registry bytes recorded in %s", path)
	return stats
}

// findOnHost returns the files below dirs that hold s, as is or inside
// gzip data (a compressed plain layer would hide it from a plain search).
func findOnHost(s string, dirs ...string) []string {
	var found []string
	needle := []byte(s)
	for _, d := range dirs {
		filepath.WalkDir(d, func(p string, de fs.DirEntry, err error) error {
			if err != nil || !de.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			if bytes.Contains(b, needle) {
				found = append(found, p)
				return nil
			}
			if len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
				if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
					if plain, _ := io.ReadAll(zr); bytes.Contains(plain, needle) {
						found = append(found, p+" (gzip)")
					}
				}
			}
			return nil
		})
	}
	return found
}

// hostDirs are where a container's plaintext could land on the host: the
// containerd root and state (content store, snapshotter), the shim's state
// directory, the VM logs, the templates, the registry's storage.
func hostDirs() []string {
	return []string{env.dir}
}

func TestConfidentialGuestPull(t *testing.T) {
	requireEnv(t)
	setupConfidential(t)
	ctx := testContext(t)
	kbsKey, err := layercrypt.NewKBSKey("kbs:///default/image-key/e2e")
	if err != nil {
		t.Fatal(err)
	}
	if err := confidentialEnv.broker.Server.SetResource(ctx, kbsKey.ResourcePath(), kbsKey.KEK); err != nil {
		t.Fatal(err)
	}
	cfg := confidentialConfig(t, confidentialEnv.broker.Measurement)

	for _, tc := range []struct {
		name  string
		repo  string
		rule  imagesplit.Rule
		rcpts []layercrypt.Recipient
	}{
		// Every layer encrypted, keys wrapped the Confidential Containers
		// way: a kbs:/// reference to a key-encryption key.
		{"kbs key reference, all layers", "cc-kbs:v1", imagesplit.ByIndex{0, 1}, []layercrypt.Recipient{kbsKey}},
		// Only the secret layer encrypted, to a JWE recipient (as skopeo
		// --encryption-key jwe:pub.pem does) whose private key the broker
		// holds; the busybox layer stays plain.
		{"jwe recipient, top layer", "cc-jwe:v1", imagesplit.ByIndex{1}, []layercrypt.Recipient{layercrypt.JWERecipient{PublicKeyPEM: confidentialEnv.broker.JWEPublicKey}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			si := pushSecretImage(t, tc.repo, tc.rule, tc.rcpts...)
			// The search finds a plain layer where there is one.
			ctl := t.TempDir()
			os.WriteFile(filepath.Join(ctl, "layer.tar.gz"), si.PlainLayer, 0o600)
			if len(findOnHost(si.Marker, ctl)) == 0 {
				t.Fatal("the marker search does not find the marker in the plain layer")
			}
			os.RemoveAll(ctl)

			id := "conf-" + strings.Split(tc.repo, ":")[0]
			out, stats, stderr, code := runConfidential(t, ctx, cfg, id, si)
			if code != 0 || out != si.Secret {
				t.Fatalf("exit %d, output %q, want %q (stderr: %s)", code, out, si.Secret, stderr)
			}
			blobs := si.BlobBytes()
			reg := stats[forward.TargetRegistry]
			t.Logf("registry channel: %d bytes from the registry (%d bytes of layer blobs), %d to it, %d streams; kbs: %+v",
				reg.FromTarget, blobs, reg.ToTarget, reg.Streams, stats[forward.TargetKBS])
			if reg.FromTarget < blobs {
				t.Errorf("%d bytes crossed the registry channel, fewer than the %d of the layers", reg.FromTarget, blobs)
			}
			if stats[forward.TargetKBS].Streams == 0 {
				t.Error("the guest never reached the key broker")
			}
			checkNoLeaks(t)
			if found := findOnHost(si.Marker, hostDirs()...); len(found) > 0 {
				t.Errorf("the confidential layer's marker is on the host: %s", strings.Join(found, ", "))
			}
			if found := findOnHost(si.Secret, hostDirs()...); len(found) > 0 {
				t.Errorf("the secret line is stored on the host: %s", strings.Join(found, ", "))
			}
		})
	}
}

func TestConfidentialRefused(t *testing.T) {
	requireEnv(t)
	setupConfidential(t)
	ctx := testContext(t)
	kbsKey, err := layercrypt.NewKBSKey("kbs:///default/image-key/refused")
	if err != nil {
		t.Fatal(err)
	}
	if err := confidentialEnv.broker.Server.SetResource(ctx, kbsKey.ResourcePath(), kbsKey.KEK); err != nil {
		t.Fatal(err)
	}
	var wrong [48]byte
	copy(wrong[:], "a guest the policy does not know")

	for _, tc := range []struct {
		name        string
		repo        string
		measurement [48]byte
		tamper      bool
		want        string
	}{
		// The registry serves a modified blob of the encrypted layer.
		{"layer digest mismatch", "tampered:v1", confidentialEnv.broker.Measurement, true, "digest mismatch"},
		// The broker's policy does not accept the guest's measurement.
		{"key broker refuses", "refused:v1", wrong, false, "key broker refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			si := pushSecretImage(t, tc.repo, imagesplit.ByIndex{1}, kbsKey)
			if tc.tamper {
				top := si.Layers[len(si.Layers)-1].Digest.Hex
				blob := confidentialEnv.registry.BlobPath(top)
				b, err := os.ReadFile(blob)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/2] ^= 0xff
				if err := os.WriteFile(blob, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cfg := confidentialConfig(t, tc.measurement)
			id := "conf-" + strings.Split(tc.repo, ":")[0]
			out, _, stderr, code := runConfidential(t, ctx, cfg, id, si)
			t.Logf("ctr: %s", strings.TrimSpace(stderr))
			if code == 0 || out != "" {
				t.Fatalf("container ran (exit %d, output %q)", code, out)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("error %q does not say %q", stderr, tc.want)
			}
			checkNoLeaks(t)
			if found := findOnHost(si.Marker, hostDirs()...); len(found) > 0 {
				t.Errorf("the confidential layer's marker is on the host: %s", strings.Join(found, ", "))
			}
		})
	}
}

func TestConfidentialLayerCache(t *testing.T) {
	requireEnv(t)
	setupConfidential(t)
	ctx := testContext(t)
	kbsKey, err := layercrypt.NewKBSKey("kbs:///default/image-key/split")
	if err != nil {
		t.Fatal(err)
	}
	if err := confidentialEnv.broker.Server.SetResource(ctx, kbsKey.ResourcePath(), kbsKey.KEK); err != nil {
		t.Fatal(err)
	}
	// busybox stays plain with an integrity descriptor (erofs, dm-verity
	// root hash in the manifest); the secret layer is encrypted.
	si := pushSecretImage(t, "split:v1", imagesplit.ByIndex{1}, kbsKey)
	base, secret := si.Layers[0], si.Layers[1]
	cache := filepath.Join(env.dir, "layer-cache")
	cfg := confidentialConfig(t, confidentialEnv.broker.Measurement)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, append(b, fmt.Sprintf("layer_cache = %q\n", cache)...), 0o644); err != nil {
		t.Fatal(err)
	}

	// Cold: the host builds the cache entry; warm: it attaches it again.
	for _, round := range []string{"cold", "warm"} {
		out, stats, stderr, code := runConfidential(t, ctx, cfg, "split-"+round, si)
		if code != 0 || out != si.Secret {
			t.Fatalf("%s cache: exit %d, output %q, want %q (stderr: %s)", round, code, out, si.Secret, stderr)
		}
		reg := stats[forward.TargetRegistry]
		t.Logf("%s cache: %d bytes from the registry (confidential layer %d bytes, cached layer %d bytes)", round, reg.FromTarget, secret.Size, base.Size)
		if reg.FromTarget < secret.Size || reg.FromTarget >= secret.Size+base.Size {
			t.Errorf("%s cache: %d bytes crossed the registry channel; want the confidential layer's %d and not the cached layer's %d",
				round, reg.FromTarget, secret.Size, base.Size)
		}
	}
	checkNoLeaks(t)
	if found := findOnHost(si.Marker, hostDirs()...); len(found) > 0 {
		t.Errorf("the confidential layer's marker is on the host: %s", strings.Join(found, ", "))
	}

	// A host that changes the cached disk is caught by the guest.
	disks, _ := filepath.Glob(filepath.Join(cache, "*.img"))
	if len(disks) != 1 {
		t.Fatalf("cache holds %v, want one disk", disks)
	}
	t.Cleanup(func() { os.Remove(disks[0]) })
	d, err := os.ReadFile(disks[0])
	if err != nil {
		t.Fatal(err)
	}
	d[8192] ^= 0xff
	if err := os.WriteFile(disks[0], d, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, stderr, code := runConfidential(t, ctx, cfg, "split-tampered", si)
	t.Logf("ctr: %s", strings.TrimSpace(stderr))
	if code == 0 || out != "" {
		t.Fatalf("container ran on a modified layer disk (exit %d, output %q)", code, out)
	}
	if !strings.Contains(stderr, "dm-verity") {
		t.Errorf("error %q does not say dm-verity refused the disk", stderr)
	}
	checkNoLeaks(t)
}

// TestConfidentialImagePolicy: the guest binds the manifest it pulled into
// its evidence before it asks for keys, and the key broker's policy lists
// the images its guests may run: a policy naming another image refuses the
// key, and the container fails saying so; naming the image lets it run.
func TestConfidentialImagePolicy(t *testing.T) {
	requireEnv(t)
	setupConfidential(t)
	ctx := testContext(t)
	kbsKey, err := layercrypt.NewKBSKey("kbs:///default/image-key/policy")
	if err != nil {
		t.Fatal(err)
	}
	if err := confidentialEnv.broker.Server.SetResource(ctx, kbsKey.ResourcePath(), kbsKey.KEK); err != nil {
		t.Fatal(err)
	}
	si := pushSecretImage(t, "image-policy:v1", imagesplit.ByIndex{1}, kbsKey)
	cfg := confidentialConfig(t, confidentialEnv.broker.Measurement)
	t.Cleanup(func() {
		if err := confidentialEnv.broker.SetImages(context.Background(), nil); err != nil {
			t.Errorf("restore the broker's policy: %v", err)
		}
	})

	other := "sha256:" + strings.Repeat("0f", 32)
	if err := confidentialEnv.broker.SetImages(ctx, []string{other}); err != nil {
		t.Fatal(err)
	}
	out, _, stderr, code := runConfidential(t, ctx, cfg, "policy-other", si)
	t.Logf("ctr: %s", strings.TrimSpace(stderr))
	if code == 0 || out != "" {
		t.Fatalf("the container ran on an image the policy does not list (exit %d, output %q)", code, out)
	}
	want := "image not allowed by policy: the guest runs image " + si.Digest.String()
	if !strings.Contains(stderr, "key broker refused") || !strings.Contains(stderr, want) {
		t.Errorf("error %q does not say %q", stderr, want)
	}
	checkNoLeaks(t)

	if err := confidentialEnv.broker.SetImages(ctx, []string{other, si.Digest.String()}); err != nil {
		t.Fatal(err)
	}
	out, _, stderr, code = runConfidential(t, ctx, cfg, "policy-listed", si)
	if code != 0 || out != si.Secret {
		t.Fatalf("exit %d, output %q, want %q (stderr: %s)", code, out, si.Secret, stderr)
	}
}
