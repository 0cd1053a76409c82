package tests

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sccontainers/scc/attest/kbs"
	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/imagesplit"
	"github.com/sccontainers/scc/imagesplit/layercrypt"
	"github.com/sccontainers/scc/internal/forward"
	"github.com/sccontainers/scc/internal/ocilayout"
	"github.com/sccontainers/scc/shim"
)

// confidentialEnv is what the confidential-container tests share: a real
// registry and an scc-kbs on 127.0.0.1, a simulated TEE authority and the
// measurement its guests report. It is set up by the first test that
// needs it.
var confidentialEnv struct {
	once        sync.Once
	err         error
	dir         string
	registry    string // host:port
	registryDir string // its storage
	kbsAddr     string
	kbsPin      string
	kbs         *kbs.Server
	simDir      string
	measurement [48]byte
	jwePub      []byte
}

// jweKeyResource is where the broker keeps the private key of JWE layers.
const jweKeyResource = "default/image-key/jwe"

func setupConfidential(t *testing.T) {
	t.Helper()
	e := &confidentialEnv
	e.once.Do(func() { e.err = startConfidentialServices() })
	if e.err != nil {
		t.Fatalf("confidential services: %v", e.err)
	}
}

func registryBin() string {
	if b := os.Getenv("REGISTRY"); b != "" {
		return b
	}
	return "/var/cache/scc/tools/bin/registry"
}

func startConfidentialServices() error {
	e := &confidentialEnv
	e.dir = filepath.Join(env.dir, "confidential")
	e.registryDir = filepath.Join(e.dir, "registry")
	if err := os.MkdirAll(e.registryDir, 0o700); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	e.registry = fmt.Sprintf("127.0.0.1:%d", port)
	if err := startRegistry(e.dir, e.registryDir, e.registry); err != nil {
		return err
	}

	// The broker, in process, with a policy that names the simulated
	// TEE's root and measurement explicitly.
	e.simDir = filepath.Join(e.dir, "sim")
	authority, err := sim.NewAuthority(e.simDir)
	if err != nil {
		return err
	}
	copy(e.measurement[:], "scc e2e guest measurement")
	ctx := context.Background()
	kbsDir := filepath.Join(e.dir, "kbs")
	e.kbs, err = kbs.New(ctx, kbs.Config{DataDir: kbsDir})
	if err != nil {
		return err
	}
	if err := e.kbs.SetPolicy(ctx, kbs.Policy{Attestation: map[string]kbs.TEEPolicy{sim.TEE: {
		Allow:        true,
		Roots:        []sim.RootFingerprint{authority.Root()},
		Measurements: []string{hex.EncodeToString(e.measurement[:])},
	}}}); err != nil {
		return err
	}
	if _, e.kbsPin, err = kbs.LoadOrCreateCert(kbsDir); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	e.kbsAddr = ln.Addr().String()
	go e.kbs.Serve(context.Background(), ln, false)

	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return err
	}
	e.jwePub = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	return e.kbs.SetResource(ctx, jweKeyResource, priv)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startRegistry runs distribution's registry on addr until the tests end
// (teardown kills what names env.dir).
func startRegistry(dir, storage, addr string) error {
	bin := registryBin()
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("registry binary: %w (make tools)", err)
	}
	cfg := filepath.Join(dir, "registry.yml")
	yml := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", storage, addr)
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start registry: %w", err)
	}
	go cmd.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("registry on %s did not answer (log %s)", addr, logf.Name())
}

// secretImage is busybox with a confidential layer on top holding
// /secret.txt (the line the container prints) and /marker (a string that
// must never be seen on the host).
type secretImage struct {
	ref     string // as pushed
	digest  v1.Hash
	secret  string
	marker  string
	layers  []v1.Descriptor
	plainGz []byte // the confidential layer before encryption, compressed
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// pushSecretImage builds the image, encrypts the layers rule selects to
// rcpts and pushes it to the test registry as repo.
func pushSecretImage(t *testing.T, repo string, rule imagesplit.Rule, rcpts ...layercrypt.Recipient) secretImage {
	t.Helper()
	si := secretImage{
		secret: "the secret line " + randomHex(t, 8),
		marker: "scc-confidential-marker-" + randomHex(t, 16),
	}
	base := busyboxImage(t)
	files := map[string]string{"secret.txt": si.secret + "\n", "marker": si.marker + "\n"}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, n := range []string{"marker", "secret.txt"} {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, files[n])
	}
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tb.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	si.plainGz, _ = io.ReadAll(rc)
	rc.Close()
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		t.Fatal(err)
	}
	res, err := imagesplit.Split(context.Background(), img, imagesplit.Options{
		Rule: rule, Recipients: rcpts, IntegrityDir: t.TempDir(), WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	ref, err := name.ParseReference(confidentialEnv.registry+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, res.Image); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	si.ref = ref.String()
	if si.digest, err = res.Image.Digest(); err != nil {
		t.Fatal(err)
	}
	m, err := res.Image.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	si.layers = m.Layers
	return si
}

// busyboxImage is the image the other tests import, as a v1.Image.
func busyboxImage(t *testing.T) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	if err := ocilayout.WriteBusybox(&buf, ocilayout.BusyboxOptions{Busybox: "/bin/busybox", Ref: "busybox"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		b, _ := io.ReadAll(tr)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img, err := imagesplit.LayoutSource{Path: dir}.Image(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// confidentialConfig writes a runtime configuration whose containers may
// be made confidential by annotation, pull from the test registry and get
// keys from the test broker, attesting with the simulated TEE.
func confidentialConfig(t *testing.T, measurement [48]byte) string {
	t.Helper()
	e := &confidentialEnv
	cfg := fmt.Sprintf(`state_dir = %q
guest_dir = %q
enable_annotations = ['io\.scc\.confidential']

[snapshot]
enabled = false
dir = %q

[vm]
log_dir = %q
boot_timeout = "90s"
kernel_params = ["scc.tee=sim"]

[confidential]
registry = %q
registry_plain_http = true
kbs = %q
kbs_cert_sha256 = %q
jwe_keys = [%q]
sim_authority = %q
sim_measurement = %q
`, env.run, guestDir(), filepath.Join(env.dir, "snapshots"), env.logs,
		e.registry, e.kbsAddr, e.kbsPin, jweKeyResource, e.simDir, hex.EncodeToString(measurement[:]))
	p := filepath.Join(t.TempDir(), "confidential.toml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runConfidential runs `cat /secret.txt` in a confidential container of
// image si and returns its output, the channel's byte counts read while
// the container still ran, ctr's stderr and exit code.
func runConfidential(t *testing.T, ctx context.Context, cfg, id string, si secretImage) (string, map[string]forward.TargetStats, string, int) {
	t.Helper()
	cmd := env.ctrd.Ctr(ctx, "run", "--rm", "--runtime", runtimeName, "--runtime-config-path", cfg,
		"--annotation", shim.AnnotationConfidential+"=true",
		"--annotation", shim.AnnotationImage+"="+si.ref,
		"--annotation", shim.AnnotationImageDigest+"="+si.digest.String(),
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
	if err := confidentialEnv.kbs.SetResource(ctx, kbsKey.ResourcePath(), kbsKey.KEK); err != nil {
		t.Fatal(err)
	}
	cfg := confidentialConfig(t, confidentialEnv.measurement)

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
		{"jwe recipient, top layer", "cc-jwe:v1", imagesplit.ByIndex{1}, []layercrypt.Recipient{layercrypt.JWERecipient{PublicKeyPEM: confidentialEnv.jwePub}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			si := pushSecretImage(t, tc.repo, tc.rule, tc.rcpts...)
			// The search finds a plain layer where there is one.
			ctl := t.TempDir()
			os.WriteFile(filepath.Join(ctl, "layer.tar.gz"), si.plainGz, 0o600)
			if len(findOnHost(si.marker, ctl)) == 0 {
				t.Fatal("the marker search does not find the marker in the plain layer")
			}
			os.RemoveAll(ctl)

			id := "conf-" + strings.Split(tc.repo, ":")[0]
			out, stats, stderr, code := runConfidential(t, ctx, cfg, id, si)
			if code != 0 || out != si.secret {
				t.Fatalf("exit %d, output %q, want %q (stderr: %s)", code, out, si.secret, stderr)
			}
			var blobs int64
			for _, l := range si.layers {
				blobs += l.Size
			}
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
			if found := findOnHost(si.marker, hostDirs()...); len(found) > 0 {
				t.Errorf("the confidential layer's marker is on the host: %s", strings.Join(found, ", "))
			}
			if found := findOnHost(si.secret, hostDirs()...); len(found) > 0 {
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
	if err := confidentialEnv.kbs.SetResource(ctx, kbsKey.ResourcePath(), kbsKey.KEK); err != nil {
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
		{"layer digest mismatch", "tampered:v1", confidentialEnv.measurement, true, "digest mismatch"},
		// The broker's policy does not accept the guest's measurement.
		{"key broker refuses", "refused:v1", wrong, false, "key broker refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			si := pushSecretImage(t, tc.repo, imagesplit.ByIndex{1}, kbsKey)
			if tc.tamper {
				top := si.layers[len(si.layers)-1].Digest.Hex
				blob := filepath.Join(confidentialEnv.registryDir, "docker/registry/v2/blobs/sha256", top[:2], top, "data")
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
			if found := findOnHost(si.marker, hostDirs()...); len(found) > 0 {
				t.Errorf("the confidential layer's marker is on the host: %s", strings.Join(found, ", "))
			}
		})
	}
}
