package imagesplit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sccontainers/scc/imagesplit/layercrypt"
)

func requireMkfsErofs(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		t.Skip("mkfs.erofs not found (apt-get install erofs-utils)")
	}
}

func TestRunLayoutToLayout(t *testing.T) {
	requireMkfsErofs(t)
	ctx := context.Background()
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	img := testImage(t,
		tarLayer(t, "bin/", "", "bin/sh", "shell"),
		tarLayer(t, "app/", "", "app/run", "secret code"),
		tarLayer(t, "etc/motd", "hello"),
	)
	if err := (LayoutSink{Path: in, Ref: "test"}).Write(ctx, img); err != nil {
		t.Fatal(err)
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	kbsKey, err := layercrypt.NewKBSKey("kbs:///default/key/test")
	if err != nil {
		t.Fatal(err)
	}

	var progress bytes.Buffer
	integ := filepath.Join(dir, "integrity")
	salt := bytes.Repeat([]byte{7}, 32)
	out := filepath.Join(dir, "out")
	reps, err := Run(ctx, LayoutSource{Path: in}, LayoutSink{Path: out}, Options{
		Rule:         ByPathPrefix{"/app"},
		Recipients:   []layercrypt.Recipient{layercrypt.JWERecipient{PublicKeyPEM: pubPEM}, kbsKey},
		IntegrityDir: integ,
		WorkDir:      dir,
		Salt:         salt,
		Progress:     &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(progress.String(), ": done in"); got != 3 {
		t.Errorf("%d layer completions in progress output:\n%s", got, progress.String())
	}
	if got := []bool{reps[0].Confidential, reps[1].Confidential, reps[2].Confidential}; !slices.Equal(got, []bool{false, true, false}) {
		t.Fatalf("confidential %v", got)
	}

	split, err := (LayoutSource{Path: out}).Image(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := split.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	origLayers, _ := img.Layers()
	origCfg, _ := img.ConfigFile()
	cfg, err := split.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.RootFS.DiffIDs, origCfg.RootFS.DiffIDs) || !slices.Equal(cfg.Config.Cmd, origCfg.Config.Cmd) ||
		!slices.Equal(cfg.Config.Env, origCfg.Config.Env) {
		t.Errorf("config changed: %+v", cfg)
	}
	for i, d := range m.Layers {
		origDigest, _ := origLayers[i].Digest()
		if reps[i].Confidential {
			if d.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip+encrypted" {
				t.Errorf("layer %d media type %s", i, d.MediaType)
			}
			for _, a := range []string{"org.opencontainers.image.enc.keys.jwe", layercrypt.KBSAnnotation, "org.opencontainers.image.enc.pubopts"} {
				if d.Annotations[a] == "" {
					t.Errorf("layer %d lacks %s", i, a)
				}
			}
			if _, ok := d.Annotations[AnnotationVerityRootHash]; ok {
				t.Errorf("encrypted layer %d has an integrity descriptor", i)
			}
			blob, err := os.ReadFile(filepath.Join(out, "blobs", "sha256", d.Digest.Hex))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(blob, []byte("secret code")) {
				t.Error("encrypted blob holds plain text")
			}
			odesc := ocispec.Descriptor{MediaType: string(d.MediaType), Digest: digest.Digest(d.Digest.String()), Size: d.Size, Annotations: d.Annotations}
			for name, key := range map[string]layercrypt.DecryptKey{"jwe": layercrypt.JWEPrivateKey{PEM: privPEM}, "kbs": kbsKey} {
				pr, err := layercrypt.Decrypt(key, bytes.NewReader(blob), odesc)
				if err != nil {
					t.Fatalf("decrypt layer %d with %s: %v", i, name, err)
				}
				plain, err := io.ReadAll(pr)
				if err != nil {
					t.Fatalf("decrypt layer %d with %s: %v", i, name, err)
				}
				if got := digest.FromBytes(plain).String(); got != origDigest.String() {
					t.Errorf("layer %d decrypted with %s to %s, want %s", i, name, got, origDigest)
				}
			}
			continue
		}
		if d.Digest != origDigest {
			t.Errorf("plain layer %d changed digest", i)
		}
		if d.Annotations[AnnotationVerityRootHash] != reps[i].RootHash || d.Annotations[AnnotationVeritySalt] != hex.EncodeToString(salt) {
			t.Errorf("layer %d annotations %v", i, d.Annotations)
		}
		erofsImg, err := os.ReadFile(reps[i].ErofsPath)
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(erofsImg); "sha256:"+hex.EncodeToString(sum[:]) != d.Annotations[AnnotationErofsDigest] {
			t.Errorf("layer %d erofs digest does not match annotation", i)
		}
		if vs, err := exec.LookPath("veritysetup"); err == nil {
			if b, err := exec.Command(vs, "verify", reps[i].ErofsPath, reps[i].VerityPath, reps[i].RootHash).CombinedOutput(); err != nil {
				t.Errorf("veritysetup verify layer %d: %v\n%s", i, err, b)
			}
		}
		// The plain layer is still readable from the output layout.
		rl, err := split.LayerByDigest(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if id, _ := rl.DiffID(); id != origCfg.RootFS.DiffIDs[i] {
			t.Errorf("layer %d diff id %s", i, id)
		}
	}
}

func TestSplitNeedsRecipient(t *testing.T) {
	requireMkfsErofs(t)
	img := testImage(t, tarLayer(t, "a", "b"))
	_, err := Split(context.Background(), img, Options{Rule: ByIndex{0}, IntegrityDir: t.TempDir(), WorkDir: t.TempDir()})
	if !errors.Is(err, ErrNoRecipient) {
		t.Fatalf("err %v, want %v", err, ErrNoRecipient)
	}
}

func TestLayoutSourceAmbiguous(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, ref := range []string{"a", "b"} {
		if err := (LayoutSink{Path: dir, Ref: ref}).Write(ctx, testImage(t, tarLayer(t, ref, ref))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := (LayoutSource{Path: dir}).Image(ctx); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("err %v, want %v", err, ErrAmbiguous)
	}
	img, err := (LayoutSource{Path: dir, Ref: "b"}).Image(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ls, _ := img.Layers(); len(ls) != 1 {
		t.Errorf("%d layers", len(ls))
	}
	if _, err := (LayoutSource{Path: dir, Ref: "c"}).Image(ctx); err == nil {
		t.Error("missing ref found")
	}
}
