package critest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specsgo "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// epoch is the modification time of every file the images hold, so that
// the same inputs always give the same digests.
var epoch = time.Unix(0, 0).UTC()

// sandboxImage is the pod sandbox image containerd is pinned to. critest
// removes registry.k8s.io/pause:3.9 in its tests, so this one differs.
const sandboxImage = "registry.k8s.io/pause:3.10"

// blob is a piece of content of an image: a layer, a config, a manifest.
type blob struct {
	desc ocispec.Descriptor
	data []byte
}

func newBlob(mediaType string, data []byte) blob {
	return blob{desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, data: data}
}

// layer is a gzip-compressed layer and the digest of its tar (its diff id).
type layer struct {
	blob
	diffID digest.Digest
}

// entry is one file, directory or symbolic link of a layer.
type entry struct {
	name     string
	mode     int64
	data     string
	linkname string // a symbolic link when set
	hardlink string // a hard link to this path of the layer when set
	dir      bool
	uid      int
}

// makeLayer writes entries, in order, into a gzip-compressed tar layer.
func makeLayer(entries []entry) (layer, error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: epoch, Uid: e.uid}
		switch {
		case e.dir:
			h.Typeflag = tar.TypeDir
		case e.linkname != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.linkname
		case e.hardlink != "":
			h.Typeflag, h.Linkname = tar.TypeLink, e.hardlink
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return layer{}, err
		}
		if _, err := io.WriteString(tw, e.data); err != nil {
			return layer{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return layer{}, err
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return layer{}, err
	}
	if err := zw.Close(); err != nil {
		return layer{}, err
	}
	return layer{blob: newBlob(ocispec.MediaTypeImageLayerGzip, gz.Bytes()), diffID: digest.FromBytes(raw.Bytes())}, nil
}

// busyboxLayer is busybox and one hard link to it per applet, with the
// directories a root file system needs. Upstream's busybox image links its
// applets hard, and critest relies on it: its MaskedPaths spec masks
// /bin/ls, which, were it a symbolic link (as in package ocilayout's
// image), would mask busybox itself and with it /bin/sh.
func busyboxLayer(busybox string) (layer, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return layer{}, fmt.Errorf("busybox layer: %w", err)
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return layer{}, fmt.Errorf("list busybox applets: %w", err)
	}
	var entries []entry
	for _, d := range []string{"bin/", "dev/", "etc/", "proc/", "root/", "sys/", "tmp/", "usr/", "usr/bin/", "var/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		entries = append(entries, entry{name: d, dir: true, mode: mode})
	}
	entries = append(entries, entry{name: "bin/busybox", data: string(bin), mode: 0o755})
	applets := strings.Fields(string(out))
	sort.Strings(applets)
	for _, a := range applets {
		if a != "busybox" && !strings.Contains(a, "/") {
			entries = append(entries, entry{name: "bin/" + a, hardlink: "bin/busybox", mode: 0o755})
		}
	}
	return makeLayer(entries)
}

// image is one test image: the layers (base first) and the config.
type image struct {
	layers []layer
	config ocispec.ImageConfig
}

// manifest returns the image's config and manifest blobs.
func (img image) manifest() (config, manifest blob, err error) {
	cfg := ocispec.Image{
		Created:  &epoch,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config:   img.config,
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	m := ocispec.Manifest{Versioned: specsgo.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for _, l := range img.layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		m.Layers = append(m.Layers, l.desc)
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		return blob{}, blob{}, err
	}
	config = newBlob(ocispec.MediaTypeImageConfig, cb)
	m.Config = config.desc
	mb, err := json.Marshal(m)
	if err != nil {
		return blob{}, blob{}, err
	}
	return config, newBlob(ocispec.MediaTypeImageManifest, mb), nil
}

// testImage is an image and the names critest pulls it by.
type testImage struct {
	refs []string
	img  image
}

// The passwd and group files of upstream's busybox image, which the
// user images name users of (www-data).
const (
	passwd = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nbin:x:2:2:bin:/bin:/bin/false\n" +
		"sys:x:3:3:sys:/dev:/bin/false\nsync:x:4:100:sync:/bin:/bin/sync\nmail:x:8:8:mail:/var/spool/mail:/bin/false\n" +
		"www-data:x:33:33:www-data:/var/www:/bin/false\noperator:x:37:37:Operator:/var:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
	group = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\ndisk:x:6:\nwheel:x:10:root\nmail:x:8:\n" +
		"www-data:x:33:\noperator:x:37:\nusers:x:100:\nnogroup:x:65534:\n"
)

// webServerScript serves /usr/share/nginx/html on port $1 with busybox
// httpd run as a binary named after the server ($2), so that pidof finds
// it by that name, and writes the pid file nginx writes. The shell stays
// PID 1 with nginx's master process title as its $0 (critest reads
// /proc/1/cmdline for it).
const webServerScript = `trap 'kill $! 2>/dev/null; exit 0' TERM INT
echo "$2: serving on port $1"
(exec -a httpd /usr/sbin/$2 -f -p "$1" -h /usr/share/nginx/html) &
mkdir -p /var/run && echo $! >/var/run/nginx.pid
wait $!`

// testImages builds every image critest pulls, from the static busybox
// at path busybox and the multicall helper binary at path helper.
func testImages(busybox, helper string) ([]testImage, error) {
	bb, err := busyboxLayer(busybox)
	if err != nil {
		return nil, err
	}
	helperBin, err := os.ReadFile(helper)
	if err != nil {
		return nil, err
	}
	etc := func(passwd, group string) []entry {
		return []entry{
			{name: "etc/", dir: true, mode: 0o755},
			{name: "etc/passwd", data: passwd, mode: 0o644},
			{name: "etc/group", data: group, mode: 0o644},
		}
	}
	// base stands for upstream's busybox image: busybox, its users, and
	// the programs busybox lacks.
	baseEntries := append(etc(passwd, group),
		entry{name: "usr/", dir: true, mode: 0o755},
		entry{name: "usr/local/", dir: true, mode: 0o755},
		entry{name: "usr/local/bin/", dir: true, mode: 0o755},
		entry{name: "usr/local/bin/multicall", data: string(helperBin), mode: 0o755},
		entry{name: "usr/local/bin/pgrep", linkname: "multicall", mode: 0o777},
		entry{name: "usr/local/bin/ipcs", linkname: "multicall", mode: 0o777},
		entry{name: "usr/local/bin/pause", linkname: "multicall", mode: 0o777},
		// nonewprivs is setuid root: it must run as root unless
		// no_new_privs stops that.
		entry{name: "usr/local/bin/nonewprivs", data: string(helperBin), mode: 0o4755},
		entry{name: "var/", dir: true, mode: 0o755},
		entry{name: "var/run/", dir: true, mode: 0o755},
	)
	baseLayer, err := makeLayer(baseEntries)
	if err != nil {
		return nil, err
	}
	path := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	base := func(extra []entry, cfg ocispec.ImageConfig) (image, error) {
		if cfg.Env == nil {
			cfg.Env = path
		}
		if cfg.Cmd == nil && cfg.Entrypoint == nil {
			cfg.Cmd = []string{"sh"}
		}
		img := image{layers: []layer{bb, baseLayer}, config: cfg}
		if len(extra) > 0 {
			l, err := makeLayer(extra)
			if err != nil {
				return image{}, err
			}
			img.layers = append(img.layers, l)
		}
		return img, nil
	}
	// file is upstream's image-test: busybox and one empty file.
	file := func(name string) (image, error) {
		return base([]entry{{name: name, mode: 0o644}}, ocispec.ImageConfig{})
	}
	user := func(u string) (image, error) { return base(nil, ocispec.ImageConfig{User: u}) }
	web := func(server, port string) (image, error) {
		return base([]entry{
			{name: "usr/sbin/", dir: true, mode: 0o755},
			{name: "usr/sbin/" + server, linkname: "/bin/busybox", mode: 0o777},
			{name: "usr/share/", dir: true, mode: 0o755},
			{name: "usr/share/nginx/", dir: true, mode: 0o755},
			{name: "usr/share/nginx/html/", dir: true, mode: 0o755},
			{name: "usr/share/nginx/html/index.html", data: "<html><body>" + server + "</body></html>\n", mode: 0o644},
		}, ocispec.ImageConfig{
			Entrypoint:   []string{"/bin/sh", "-c", webServerScript, server + ": master process " + server + " -g daemon off;", port, server},
			ExposedPorts: map[string]struct{}{port + "/tcp": {}},
		})
	}
	pause := func(version string) (image, error) {
		return base([]entry{{name: "pause-" + version, mode: 0o644}}, ocispec.ImageConfig{
			Entrypoint: []string{"/usr/local/bin/pause"},
		})
	}
	const (
		e2e   = "registry.k8s.io/e2e-test-images/"
		stage = "gcr.io/k8s-staging-cri-tools/"
	)
	specs := []struct {
		refs []string
		make func() (image, error)
	}{
		{[]string{e2e + "busybox:1.29-2"}, func() (image, error) { return base(nil, ocispec.ImageConfig{}) }},
		{[]string{e2e + "nginx:1.14-2"}, func() (image, error) { return web("nginx", "80") }},
		{[]string{e2e + "httpd:2.4.39-4"}, func() (image, error) { return web("httpd", "80") }},
		{[]string{stage + "hostnet-nginx-" + runtime.GOARCH + ":latest"}, func() (image, error) { return web("nginx", "12003") }},
		{[]string{e2e + "nonewprivs:1.3"}, func() (image, error) {
			return base(nil, ocispec.ImageConfig{Entrypoint: []string{"/usr/local/bin/nonewprivs"}})
		}},
		{[]string{stage + "test-image-user-uid:latest"}, func() (image, error) { return user("1002") }},
		{[]string{stage + "test-image-user-username:latest"}, func() (image, error) { return user("www-data") }},
		{[]string{stage + "test-image-user-uid-group:latest"}, func() (image, error) { return user("1003:1004") }},
		{[]string{stage + "test-image-user-username-group:latest"}, func() (image, error) { return user("www-data:1004") }},
		{[]string{stage + "test-image-predefined-group:latest"}, func() (image, error) {
			return base(etc(passwd+"default-user:x:1000:1000::/home/default-user:/bin/sh\n",
				group+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"), ocispec.ImageConfig{User: "1000"})
		}},
		{[]string{stage + "test-image-latest:latest"}, func() (image, error) { return file("test-image-latest") }},
		{[]string{stage + "test-image-digest:latest"}, func() (image, error) { return file("test-image-digest") }},
		{[]string{stage + "test-image-1:latest"}, func() (image, error) { return file("test-image-1") }},
		{[]string{stage + "test-image-2:latest"}, func() (image, error) { return file("test-image-2") }},
		{[]string{stage + "test-image-3:latest"}, func() (image, error) { return file("test-image-3") }},
		{[]string{stage + "test-image-tags:1", stage + "test-image-tags:2", stage + "test-image-tags:3"}, func() (image, error) { return file("same-image") }},
		{[]string{stage + "test-image-tag:test"}, func() (image, error) { return file("test") }},
		{[]string{stage + "test-image-tag:all"}, func() (image, error) { return file("all") }},
		{[]string{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"}, func() (image, error) { return pause("3.9") }},
		{[]string{sandboxImage}, func() (image, error) { return pause("3.10") }},
	}
	var out []testImage
	for _, s := range specs {
		img, err := s.make()
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", s.refs[0], err)
		}
		out = append(out, testImage{refs: s.refs, img: img})
	}
	return out, nil
}

// mirroredHosts are the registries critest names; containerd is told to
// pull from the local registry for each of them.
func mirroredHosts(images []testImage) []string {
	seen := map[string]bool{}
	var hosts []string
	for _, ti := range images {
		for _, r := range ti.refs {
			h, _, _ := strings.Cut(r, "/")
			if !seen[h] {
				seen[h] = true
				hosts = append(hosts, h)
			}
		}
	}
	sort.Strings(hosts)
	return hosts
}

// splitRef splits "host/path/name:tag" into the repository path the local
// registry stores it under and the tag.
func splitRef(ref string) (repo, tag string, err error) {
	_, rest, ok := strings.Cut(ref, "/")
	i := strings.LastIndex(rest, ":")
	if !ok || i < 0 || strings.Contains(rest[i:], "/") {
		return "", "", fmt.Errorf("image reference %q: want host/name:tag", ref)
	}
	return rest[:i], rest[i+1:], nil
}

// buildHelper compiles the multicall helper for the images into dir.
func buildHelper(dir string) (string, error) {
	out := filepath.Join(dir, "multicall")
	cmd := exec.Command(goTool(), "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./testdata/multicall")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build multicall helper: %v: %s", err, b)
	}
	return out, nil
}

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
