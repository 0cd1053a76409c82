package critest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func buildTestImages(t *testing.T) map[string]testImage {
	t.Helper()
	if !fileExists("/bin/busybox") {
		t.Skip("/bin/busybox missing (busybox-static, make deps)")
	}
	helper := filepath.Join(t.TempDir(), "multicall")
	if err := os.WriteFile(helper, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	images, err := testImages("/bin/busybox", helper)
	if err != nil {
		t.Fatal(err)
	}
	byRef := map[string]testImage{}
	for _, ti := range images {
		for _, r := range ti.refs {
			if _, dup := byRef[r]; dup {
				t.Fatalf("image %s built twice", r)
			}
			byRef[r] = ti
		}
	}
	return byRef
}

// layerFiles reads a gzip-compressed layer, checking its diff id.
func layerFiles(t *testing.T, l layer) map[string]*tar.Header {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(l.data))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if got := digest.FromBytes(raw); got != l.diffID {
		t.Errorf("layer diff id %s, tar digest %s", l.diffID, got)
	}
	if got := digest.FromBytes(l.data); got != l.desc.Digest || int64(len(l.data)) != l.desc.Size {
		t.Errorf("layer descriptor %v does not match its data", l.desc)
	}
	files := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
	}
}

func TestTestImages(t *testing.T) {
	images := buildTestImages(t)
	manifestOf := func(ref string) digest.Digest {
		t.Helper()
		ti, ok := images[ref]
		if !ok {
			t.Fatalf("no image %s", ref)
		}
		_, m, err := ti.img.manifest()
		if err != nil {
			t.Fatal(err)
		}
		return m.desc.Digest
	}
	const stage = "gcr.io/k8s-staging-cri-tools/"
	// critest wants these to be one image under several names...
	for _, same := range [][]string{
		{stage + "test-image-tags:1", stage + "test-image-tags:2", stage + "test-image-tags:3"},
		{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"},
	} {
		for _, r := range same[1:] {
			if manifestOf(r) != manifestOf(same[0]) {
				t.Errorf("%s and %s differ", r, same[0])
			}
		}
	}
	// ...and these to differ.
	distinct := []string{stage + "test-image-1:latest", stage + "test-image-2:latest", stage + "test-image-3:latest",
		stage + "test-image-tag:test", stage + "test-image-tag:all", stage + "test-image-latest:latest",
		"registry.k8s.io/pause:3.9", sandboxImage}
	seen := map[digest.Digest]string{}
	for _, r := range distinct {
		d := manifestOf(r)
		if other, dup := seen[d]; dup {
			t.Errorf("%s is the same image as %s", r, other)
		}
		seen[d] = r
	}

	users := map[string]string{
		"test-image-user-uid": "1002", "test-image-user-username": "www-data",
		"test-image-user-uid-group": "1003:1004", "test-image-user-username-group": "www-data:1004",
		"test-image-predefined-group": "1000",
	}
	for name, want := range users {
		if got := images[stage+name+":latest"].img.config.User; got != want {
			t.Errorf("%s: user %q, want %q", name, got, want)
		}
	}

	// Applets are hard links, so that masking one (critest masks /bin/ls)
	// leaves busybox and the others alone.
	bb := images["registry.k8s.io/e2e-test-images/busybox:1.29-2"].img
	for _, name := range []string{"bin/ls", "bin/sh"} {
		if h := layerFiles(t, bb.layers[0])[name]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "bin/busybox" {
			t.Errorf("busybox image: %s is not a hard link to bin/busybox: %+v", name, h)
		}
	}

	nnp := images["registry.k8s.io/e2e-test-images/nonewprivs:1.3"].img
	var found bool
	for _, l := range nnp.layers {
		if h, ok := layerFiles(t, l)["usr/local/bin/nonewprivs"]; ok {
			found = true
			if h.Mode&0o4000 == 0 || h.Uid != 0 {
				t.Errorf("nonewprivs is not setuid root: mode %o uid %d", h.Mode, h.Uid)
			}
		}
	}
	if !found {
		t.Error("nonewprivs image lacks usr/local/bin/nonewprivs")
	}

	web := images["registry.k8s.io/e2e-test-images/nginx:1.14-2"].img
	if ep := strings.Join(web.config.Entrypoint, " "); !strings.Contains(ep, "master process") || !strings.Contains(ep, " 80 nginx") {
		t.Errorf("nginx entrypoint %q: want nginx's master process title and port 80", ep)
	}
	files := layerFiles(t, web.layers[len(web.layers)-1])
	if h := files["usr/sbin/nginx"]; h == nil || h.Linkname != "/bin/busybox" {
		t.Errorf("nginx image: usr/sbin/nginx is not busybox: %+v", h)
	}
	if files["usr/share/nginx/html/index.html"] == nil {
		t.Error("nginx image has no index.html")
	}
}

func TestMirroredHosts(t *testing.T) {
	images := []testImage{
		{refs: []string{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"}},
		{refs: []string{"gcr.io/k8s-staging-cri-tools/test-image-1:latest", "registry.k8s.io/e2e-test-images/busybox:1.29-2"}},
	}
	got := strings.Join(mirroredHosts(images), " ")
	if want := "gcr.io k8s.gcr.io registry.k8s.io"; got != want {
		t.Errorf("mirrored hosts %q, want %q", got, want)
	}
	if h := hostsTOML("gcr.io"); !strings.Contains(h, `server = "https://gcr.io"`) || !strings.Contains(h, `[host."http://127.0.0.1:5000"]`) {
		t.Errorf("hosts.toml:\n%s", h)
	}
}

func TestSplitRef(t *testing.T) {
	for _, tc := range []struct {
		ref, repo, tag string
		err            bool
	}{
		{ref: "registry.k8s.io/e2e-test-images/busybox:1.29-2", repo: "e2e-test-images/busybox", tag: "1.29-2"},
		{ref: "registry.k8s.io/pause:3.9", repo: "pause", tag: "3.9"},
		{ref: "127.0.0.1:5000/pause:3.9", repo: "pause", tag: "3.9"},
		{ref: "registry.k8s.io/pause", err: true},
		{ref: "pause:3.9", err: true},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			repo, tag, err := splitRef(tc.ref)
			if (err != nil) != tc.err || repo != tc.repo || tag != tc.tag {
				t.Errorf("splitRef(%q) = %q, %q, %v; want %q, %q, error %v", tc.ref, repo, tag, err, tc.repo, tc.tag, tc.err)
			}
		})
	}
}

const sampleReport = `[{"SuiteDescription": "CRI validation", "SpecReports": [
 {"LeafNodeType": "BeforeSuite", "State": "passed"},
 {"ContainerHierarchyTexts": ["[k8s.io] Streaming", "runtime should support streaming interfaces"], "LeafNodeType": "It",
  "LeafNodeText": "runtime should support portforward [Conformance]", "State": "failed", "RunTime": 2500000000,
  "Failure": {"Message": "Expected\n  <error>: connection refused\nto be nil", "Location": {"FileName": "/root/go/pkg/mod/sigs.k8s.io/cri-tools@v1.37.0/pkg/validate/streaming.go", "LineNumber": 42}}},
 {"ContainerHierarchyTexts": ["[k8s.io] PodSandbox"], "LeafNodeType": "It", "LeafNodeText": "runtime should support running PodSandbox", "State": "passed"},
 {"ContainerHierarchyTexts": ["[k8s.io] AppArmor"], "LeafNodeType": "It", "LeafNodeText": "should work", "State": "skipped"}
]}]`

func TestParseReport(t *testing.T) {
	rs, err := parseReport(strings.NewReader(sampleReport))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("%d specs, want 3 (It nodes only)", len(rs))
	}
	pf := rs["[k8s.io] Streaming runtime should support streaming interfaces runtime should support portforward [Conformance]"]
	if pf.State != "failed" || pf.Where != "sigs.k8s.io/cri-tools@v1.37.0/pkg/validate/streaming.go:42" || pf.Seconds != 2.5 ||
		!strings.Contains(pf.Message, "connection refused") {
		t.Errorf("portforward spec: %+v", pf)
	}
	if c := count(rs); c != (counts{passed: 1, failed: 1, skipped: 1}) {
		t.Errorf("counts %v", c)
	}
	if _, err := parseReport(strings.NewReader(`[{"SpecReports": []}]`)); err == nil {
		t.Error("a report without specs parsed")
	}
}

func TestCompare(t *testing.T) {
	runc := map[string]specResult{
		"a": {State: "passed"}, "b": {State: "passed"}, "c": {State: "failed"}, "d": {State: "failed"}, "e": {State: "passed"},
	}
	scc := map[string]specResult{
		"a": {State: "passed"}, "b": {State: "timedout"}, "c": {State: "passed"}, "d": {State: "failed"}, "e": {State: "skipped"},
	}
	c := compare(runc, scc)
	if strings.Join(c.regressions, ",") != "b" || strings.Join(c.sccOnly, ",") != "c" || strings.Join(c.bothFail, ",") != "d" {
		t.Errorf("compare: %+v", c)
	}
	var b bytes.Buffer
	writeSummary(&b, runc, scc, c)
	if !strings.Contains(b.String(), "| scc | 2 | 2 | 1 |") {
		t.Errorf("summary:\n%s", b.String())
	}
}
