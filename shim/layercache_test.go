package shim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	ggcrempty "github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	agent "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/imagesplit"
	"github.com/sccontainers/scc/imagesplit/layercrypt"
)

func TestCachedLayer(t *testing.T) {
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		t.Skip("mkfs.erofs (erofs-utils) is not installed")
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	base, err := crane.Layer(map[string][]byte{"etc/os": []byte("plain base layer\n")})
	if err != nil {
		t.Fatal(err)
	}
	top, err := crane.Layer(map[string][]byte{"secret": []byte("confidential\n")})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(ggcrempty.Image, base, top)
	if err != nil {
		t.Fatal(err)
	}
	key, err := layercrypt.NewKBSKey("kbs:///default/key/t")
	if err != nil {
		t.Fatal(err)
	}
	res, err := imagesplit.Split(context.Background(), img, imagesplit.Options{
		Rule: imagesplit.ByIndex{1}, Recipients: []layercrypt.Recipient{key}, IntegrityDir: t.TempDir(), WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	ref, err := name.ParseReference(host+"/split:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, res.Image); err != nil {
		t.Fatal(err)
	}

	// The registry address is the configuration's, whatever the reference
	// names.
	c := ConfidentialConfig{Registry: host, RegistryPlainHTTP: true, LayerCache: t.TempDir()}
	rimg, err := c.remoteImage(context.Background(), &agent.GuestImage{Reference: "registry.example/split:v1"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := rimg.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	desc := m.Layers[0]
	path, err := c.cachedLayer(context.Background(), rimg, desc)
	if err != nil {
		t.Fatal(err)
	}
	disk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	size, _ := strconv.Atoi(desc.Annotations[imagesplit.AnnotationErofsSize])
	if got := "sha256:" + hex.EncodeToString(sum(disk[:size])); got != desc.Annotations[imagesplit.AnnotationErofsDigest] {
		t.Errorf("disk starts with erofs %s, the manifest says %s", got, desc.Annotations[imagesplit.AnnotationErofsDigest])
	}
	if len(disk) <= size || string(disk[size:size+6]) != "verity" {
		t.Errorf("the dm-verity superblock does not follow the erofs image (%d bytes, erofs %d)", len(disk), size)
	}
	// A hit is the same file (a rebuild would rename a new one in).
	fi, _ := os.Stat(path)
	again, err := c.cachedLayer(context.Background(), rimg, desc)
	if fi2, _ := os.Stat(again); err != nil || again != path || !os.SameFile(fi, fi2) {
		t.Errorf("second lookup %s, %v: want the cached %s", again, err, path)
	}

	// A manifest whose root hash the layer does not give is refused, and
	// nothing is cached for it.
	bad := desc
	bad.Annotations = map[string]string{}
	for k, v := range desc.Annotations {
		bad.Annotations[k] = v
	}
	bad.Annotations[imagesplit.AnnotationVerityRootHash] = strings.Repeat("0", 64)
	bad.Annotations[imagesplit.AnnotationErofsDigest] = "sha256:" + strings.Repeat("1", 64)
	if _, err := c.cachedLayer(context.Background(), rimg, bad); !errors.Is(err, errdefs.ErrDataLoss) {
		t.Errorf("cachedLayer of a wrong descriptor = %v, want ErrDataLoss", err)
	}
	if _, err := os.Stat(c.LayerCache + "/" + strings.Repeat("1", 64) + ".img"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused layer was cached (%v)", err)
	}
}

func sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func TestEvictLayers(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	// a is the least recently used, c the newest; each 1 MiB.
	for i, n := range []string{"a", "b", "c", "new"} {
		p := filepath.Join(dir, n+".img")
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		at := now.Add(time.Duration(i-10) * time.Minute)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	// "new" was just added but is the oldest by time: it is kept anyway.
	old := now.Add(-time.Hour)
	os.Chtimes(filepath.Join(dir, "new.img"), old, old)
	if err := evictLayers(dir, 2<<20, filepath.Join(dir, "new.img")); err != nil {
		t.Fatal(err)
	}
	var left []string
	paths, _ := filepath.Glob(filepath.Join(dir, "*.img"))
	for _, p := range paths {
		left = append(left, strings.TrimSuffix(filepath.Base(p), ".img"))
	}
	if strings.Join(left, ",") != "c,new" {
		t.Errorf("left %v, want c and new", left)
	}
}
