package ocilayout

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestWriteBusybox(t *testing.T) {
	const bb = "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		t.Skip("busybox-static is not installed (/bin/busybox)")
	}
	var a, b bytes.Buffer
	opts := BusyboxOptions{Busybox: bb, Ref: "scc.local/busybox:1"}
	if err := WriteBusybox(&a, opts); err != nil {
		t.Fatal(err)
	}
	if err := WriteBusybox(&b, opts); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two writes of the same image differ")
	}

	files := map[string][]byte{}
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], _ = io.ReadAll(tr)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("index has %d manifests, want 1", len(idx.Manifests))
	}
	md := idx.Manifests[0]
	if got := md.Annotations["io.containerd.image.name"]; got != "scc.local/busybox:1" {
		t.Errorf("image name %q", got)
	}
	if got := md.Annotations[ocispec.AnnotationRefName]; got != "1" {
		t.Errorf("ref name %q, want 1", got)
	}
	// Every blob is stored under its digest.
	blob := func(d ocispec.Descriptor) []byte {
		t.Helper()
		data, ok := files[blobPath(d)]
		if !ok {
			t.Fatalf("blob %s missing", d.Digest)
		}
		if digest.FromBytes(data) != d.Digest || int64(len(data)) != d.Size {
			t.Fatalf("blob %s does not match its descriptor", d.Digest)
		}
		return data
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(blob(md), &m); err != nil {
		t.Fatal(err)
	}
	var img ocispec.Image
	if err := json.Unmarshal(blob(m.Config), &img); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(m.Layers[0])))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	if digest.FromBytes(raw) != img.RootFS.DiffIDs[0] {
		t.Error("diff id does not match the uncompressed layer")
	}
	links := map[string]string{}
	lr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeSymlink {
			links[h.Name] = h.Linkname
		}
	}
	for _, applet := range []string{"bin/sh", "bin/echo", "bin/sleep", "bin/cat"} {
		if links[applet] != "busybox" {
			t.Errorf("%s is not a link to busybox", applet)
		}
	}
}
