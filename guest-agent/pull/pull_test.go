package pull

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/client"
	"github.com/sccontainers/scc/imagesplit"
	"github.com/sccontainers/scc/imagesplit/layercrypt"
	"github.com/sccontainers/scc/internal/forward"
)

// testRegistry is go-containerregistry's in-memory registry behind a
// handler that may change blobs on their way out, reached through a
// channel that counts the streams it opens.
type testRegistry struct {
	srv    *httptest.Server
	mu     sync.Mutex
	tamper map[string]bool // blob digest -> flip a byte, guarded by mu
	dials  int             // guarded by mu
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{tamper: map[string]bool{}}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		flip := req.Method == http.MethodGet && r.tamper[req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]]
		r.mu.Unlock()
		if !flip {
			reg.ServeHTTP(w, req)
			return
		}
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		body[len(body)/2] ^= 0xff
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *testRegistry) host() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// Dial is the guest's channel: only the registry target exists.
func (r *testRegistry) Dial(ctx context.Context, target string) (net.Conn, error) {
	if target != forward.TargetRegistry {
		return nil, fmt.Errorf("%w: %s", forward.ErrRefused, target)
	}
	r.mu.Lock()
	r.dials++
	r.mu.Unlock()
	return (&net.Dialer{}).DialContext(ctx, "tcp", r.host())
}

func (r *testRegistry) push(t *testing.T, repo string, img v1.Image) (string, v1.Hash) {
	t.Helper()
	ref, err := name.ParseReference(r.host()+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref.String(), d
}

// fakeBroker serves resources, or refuses them all.
type fakeBroker struct {
	resources map[string][]byte
	refuse    bool
	calls     int
}

func (b *fakeBroker) GetResource(_ context.Context, path string) ([]byte, error) {
	b.calls++
	if b.refuse {
		return nil, &client.ServerError{Status: 403, Type: "PolicyDeny", Detail: "no"}
	}
	s, ok := b.resources[path]
	if !ok {
		return nil, &client.ServerError{Status: 404, Type: "ResourceNotFound"}
	}
	return s, nil
}

func baseImage(t *testing.T) v1.Image {
	t.Helper()
	bottom, err := crane.Layer(map[string][]byte{"etc/os": []byte("base\n"), "gone": []byte("x"), "dir/keep": []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	top, err := crane.Layer(map[string][]byte{"secret.txt": []byte("the secret line\n"), ".wh.gone": nil})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, bottom, top)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func encrypted(t *testing.T, img v1.Image, rcpt layercrypt.Recipient) v1.Image {
	t.Helper()
	res, err := imagesplit.Split(context.Background(), img, imagesplit.Options{
		Rule: imagesplit.ByIndex{1}, Recipients: []layercrypt.Recipient{rcpt},
		IntegrityDir: t.TempDir(), WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Skipf("split image (needs mkfs.erofs for the plain layer): %v", err)
	}
	t.Cleanup(func() { res.Close() })
	return res.Image
}

func rsaPair(t *testing.T) (pub, priv []byte) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pb}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("unpacking layers (owners, whiteout device nodes) needs root")
	}
}

func TestPull(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	ctx := context.Background()
	kbsKey, err := layercrypt.NewKBSKey("kbs:///default/image-key/app")
	if err != nil {
		t.Fatal(err)
	}
	pub, priv := rsaPair(t)
	plainRef, plainDigest := reg.push(t, "plain:v1", baseImage(t))
	kbsRef, _ := reg.push(t, "kbs:v1", encrypted(t, baseImage(t), kbsKey))
	jweRef, _ := reg.push(t, "jwe:v1", encrypted(t, baseImage(t), layercrypt.JWERecipient{PublicKeyPEM: pub}))
	broker := &fakeBroker{resources: map[string][]byte{"default/image-key/app": kbsKey.KEK, "default/image-key/jwe": priv}}
	plainConfig, err := baseImage(t).ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	// A multi-platform index whose linux/amd64 manifest is the plain
	// image.
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: baseImage(t),
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	idxRef, err := name.ParseReference(reg.host()+"/multi:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(idxRef, idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		req    *agentapi.GuestImage
		pinned bool
		index  v1.Hash
	}{
		{"plain", &agentapi.GuestImage{Reference: plainRef, RegistryPlainHttp: true}, false, v1.Hash{}},
		{"pinned", &agentapi.GuestImage{Reference: plainRef, ManifestDigest: plainDigest.String(), RegistryPlainHttp: true}, true, v1.Hash{}},
		{"pinned with the config the host saw", &agentapi.GuestImage{Reference: plainRef, ManifestDigest: plainDigest.String(), ConfigDigest: plainConfig.String(), RegistryPlainHttp: true}, true, v1.Hash{}},
		{"index pinned", &agentapi.GuestImage{Reference: idxRef.String(), ManifestDigest: idxDigest.String(), RegistryPlainHttp: true}, true, idxDigest},
		{"kbs key reference", &agentapi.GuestImage{Reference: kbsRef, RegistryPlainHttp: true}, false, v1.Hash{}},
		{"jwe recipient", &agentapi.GuestImage{Reference: jweRef, RegistryPlainHttp: true}, false, v1.Hash{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Puller{Channel: reg, Keys: &BrokerKeys{Broker: broker, JWEResources: []string{"default/image-key/jwe"}}}
			dir := filepath.Join(t.TempDir(), "img")
			img, err := p.Pull(ctx, tc.req, dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(img.Layers) != 2 {
				t.Fatalf("layers %v", img.Layers)
			}
			if img.Pinned != tc.pinned || img.IndexDigest != tc.index || img.Reference != tc.req.GetReference() {
				t.Errorf("pinned %v, index %v, reference %q; want %v, %v, %q", img.Pinned, img.IndexDigest, img.Reference, tc.pinned, tc.index, tc.req.GetReference())
			}
			if tc.index != (v1.Hash{}) && img.ManifestDigest != plainDigest {
				t.Errorf("manifest %v from the index, want the amd64 one %v", img.ManifestDigest, plainDigest)
			}
			if img.ConfigDigest.Hex == "" {
				t.Error("no config digest")
			}
			got, err := os.ReadFile(filepath.Join(img.Layers[1], "secret.txt"))
			if err != nil || string(got) != "the secret line\n" {
				t.Errorf("secret.txt = %q, %v", got, err)
			}
			if b, err := os.ReadFile(filepath.Join(img.Layers[0], "etc/os")); err != nil || string(b) != "base\n" {
				t.Errorf("etc/os = %q, %v", b, err)
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(img.Layers[1], "gone"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("whiteout of gone is not an overlay whiteout: %+v, %v", st, err)
			}
		})
	}
}

func TestPullRefuses(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	ctx := context.Background()
	kbsKey, err := layercrypt.NewKBSKey("kbs:///default/image-key/app")
	if err != nil {
		t.Fatal(err)
	}
	img := encrypted(t, baseImage(t), kbsKey)
	ref, _ := reg.push(t, "app:v1", img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	plainRef, _ := reg.push(t, "plain:v1", baseImage(t))
	pm, err := baseImage(t).Manifest()
	if err != nil {
		t.Fatal(err)
	}
	good := map[string][]byte{"default/image-key/app": kbsKey.KEK}
	other, _ := layercrypt.NewKBSKey("kbs:///default/image-key/app")

	for _, tc := range []struct {
		name    string
		req     *agentapi.GuestImage
		tamper  string
		broker  *fakeBroker
		wantErr error
		want    string
	}{
		{name: "modified encrypted blob", req: &agentapi.GuestImage{Reference: ref, RegistryPlainHttp: true},
			tamper: m.Layers[1].Digest.Hex, broker: &fakeBroker{resources: good}, wantErr: ErrDigestMismatch, want: "layer 1"},
		{name: "modified plain blob", req: &agentapi.GuestImage{Reference: plainRef, RegistryPlainHttp: true},
			tamper: pm.Layers[0].Digest.Hex, broker: &fakeBroker{}, wantErr: ErrDigestMismatch, want: "layer 0"},
		{name: "broker refuses", req: &agentapi.GuestImage{Reference: ref, RegistryPlainHttp: true},
			broker: &fakeBroker{refuse: true}, wantErr: errdefs.ErrPermissionDenied, want: "refused"},
		{name: "wrong key", req: &agentapi.GuestImage{Reference: ref, RegistryPlainHttp: true},
			broker: &fakeBroker{resources: map[string][]byte{"default/image-key/app": other.KEK}}, wantErr: errdefs.ErrPermissionDenied, want: "opens the layer"},
		{name: "pinned digest differs", req: &agentapi.GuestImage{Reference: ref, RegistryPlainHttp: true, ManifestDigest: "sha256:" + strings.Repeat("0", 64)},
			broker: &fakeBroker{resources: good}, want: "manifest"},
		{name: "bad pin", req: &agentapi.GuestImage{Reference: ref, ManifestDigest: "sha256:12"}, broker: &fakeBroker{}, wantErr: errdefs.ErrInvalidArgument},
		{name: "config not the host's", req: &agentapi.GuestImage{Reference: plainRef, RegistryPlainHttp: true, ConfigDigest: "sha256:" + strings.Repeat("1", 64)},
			broker: &fakeBroker{}, wantErr: ErrConfigMismatch, want: "the host built the container from sha256:1111"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg.mu.Lock()
			reg.tamper = map[string]bool{}
			if tc.tamper != "" {
				reg.tamper["sha256:"+tc.tamper] = true
			}
			reg.mu.Unlock()
			dir := filepath.Join(t.TempDir(), "img")
			p := &Puller{Channel: reg, Keys: &BrokerKeys{Broker: tc.broker}}
			_, err := p.Pull(ctx, tc.req, dir)
			if err == nil {
				t.Fatal("Pull succeeded")
			}
			t.Logf("Pull: %v", err)
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Pull = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Pull = %v, want it to say %q", err, tc.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("failed pull left %s behind (%v)", dir, err)
			}
		})
	}
}

// recorder records the images it is told of, or refuses them.
type recorder struct {
	err    error
	images []attest.Image
}

func (r *recorder) RecordImage(_ context.Context, img attest.Image) error {
	r.images = append(r.images, img)
	return r.err
}

// The image is recorded before any layer is fetched, with what was pulled;
// a recorder that fails stops the pull before its keys are asked for.
func TestPullRecordsImage(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	ctx := context.Background()
	kbsKey, err := layercrypt.NewKBSKey("kbs:///default/image-key/app")
	if err != nil {
		t.Fatal(err)
	}
	img := encrypted(t, baseImage(t), kbsKey)
	ref, d := reg.push(t, "app:v1", img)
	cfg, _ := img.ConfigName()
	broker := &fakeBroker{resources: map[string][]byte{"default/image-key/app": kbsKey.KEK}}
	req := &agentapi.GuestImage{Reference: ref, ManifestDigest: d.String(), RegistryPlainHttp: true}

	r := &recorder{}
	p := &Puller{Channel: reg, Keys: &BrokerKeys{Broker: broker}, Recorder: r}
	if _, err := p.Pull(ctx, req, filepath.Join(t.TempDir(), "img")); err != nil {
		t.Fatal(err)
	}
	want := attest.Image{Manifest: d.String(), Config: cfg.String(), Reference: ref, Pinned: true}
	if len(r.images) != 1 || r.images[0] != want {
		t.Errorf("recorded %+v, want %+v", r.images, want)
	}

	broker.calls = 0
	p = &Puller{Channel: reg, Keys: &BrokerKeys{Broker: broker}, Recorder: &recorder{err: errors.New("no tpm")}}
	dir := filepath.Join(t.TempDir(), "img")
	if _, err := p.Pull(ctx, req, dir); err == nil || !strings.Contains(err.Error(), "record the image in the attestation evidence: no tpm") {
		t.Fatalf("Pull = %v", err)
	}
	if broker.calls != 0 {
		t.Errorf("the broker was asked %d times for keys of an image not recorded", broker.calls)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed pull left %s", dir)
	}
}

func TestKeyReference(t *testing.T) {
	enc := func(s string) string {
		return b64(`{"kid":"` + s + `","wrapped_data":"","iv":"","wrap_type":"A256GCM"}`)
	}
	for _, tc := range []struct {
		packet, path string
	}{
		{enc("kbs:///default/key/app"), "default/key/app"},
		{enc("kbs://broker.example:8080/r/t/g"), "r/t/g"},
		{enc("kbs:///default/key"), ""},
		{enc("https://x/a/b/c"), ""},
		{enc("kbs:///a/b/c/d"), ""},
		{"not base64!", ""},
		{b64("not json"), ""},
	} {
		_, path, err := keyReference(tc.packet)
		if path != tc.path || (err == nil) != (tc.path != "") {
			t.Errorf("keyReference(%q) = %q, %v; want %q", tc.packet, path, err, tc.path)
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
