package erofs

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func makeTar(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link,
			Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0)}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestUnpack(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
		want    map[string]string // path -> content ("" for dirs/links checked by existence)
		absent  []string
		wantErr bool
	}{
		{
			name: "files dirs links",
			entries: []entry{
				{name: "app/", typ: tar.TypeDir, mode: 0o755},
				{name: "app/run.sh", typ: tar.TypeReg, mode: 0o755, body: "#!/bin/sh\n"},
				{name: "app/link", typ: tar.TypeSymlink, link: "run.sh"},
				{name: "app/hard", typ: tar.TypeLink, link: "app/run.sh"},
			},
			want: map[string]string{"app/run.sh": "#!/bin/sh\n", "app/link": "#!/bin/sh\n", "app/hard": "#!/bin/sh\n"},
		},
		{
			name: "whiteouts skipped",
			entries: []entry{
				{name: "etc/.wh.passwd", typ: tar.TypeReg, mode: 0o644},
				{name: "etc/.wh..wh..opq", typ: tar.TypeReg, mode: 0o644},
				{name: "etc/hosts", typ: tar.TypeReg, mode: 0o644, body: "x"},
			},
			want:   map[string]string{"etc/hosts": "x"},
			absent: []string{"etc/.wh.passwd", "etc/.wh..wh..opq"},
		},
		{
			name: "escape through dotdot stays inside",
			entries: []entry{
				{name: "../../outside", typ: tar.TypeReg, mode: 0o644, body: "y"},
			},
			want: map[string]string{"outside": "y"},
		},
		{
			name: "escape through symlink stays inside",
			entries: []entry{
				{name: "evil", typ: tar.TypeSymlink, link: "/"},
				{name: "evil/inside", typ: tar.TypeReg, mode: 0o644, body: "z"},
			},
			want: map[string]string{"inside": "z"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := Unpack(bytes.NewReader(makeTar(t, tc.entries)), dir)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Unpack: %v", err)
			}
			for p, body := range tc.want {
				b, err := os.ReadFile(filepath.Join(dir, p))
				if err != nil {
					t.Errorf("read %s: %v", p, err)
					continue
				}
				if string(b) != body {
					t.Errorf("%s = %q, want %q", p, b, body)
				}
			}
			for _, p := range tc.absent {
				if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
					t.Errorf("%s exists", p)
				}
			}
		})
	}
}

func TestBuild(t *testing.T) {
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		t.Skip("mkfs.erofs not found (apt-get install erofs-utils)")
	}
	layer := makeTar(t, []entry{
		{name: "app/", typ: tar.TypeDir, mode: 0o755},
		{name: "app/data", typ: tar.TypeReg, mode: 0o644, body: string(bytes.Repeat([]byte("0123456789"), 1000))},
	})
	dir := t.TempDir()
	build := func(name string) []byte {
		out := filepath.Join(dir, name)
		if err := Build(context.Background(), bytes.NewReader(layer), out,
			Options{UUID: "0b0e0f5c-1c2d-4e5f-8a9b-0c1d2e3f4a5b", TempDir: dir}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 || len(b)%BlockSize != 0 {
			t.Fatalf("image of %d bytes is not block aligned", len(b))
		}
		// erofs superblock magic at offset 1024.
		if !bytes.Equal(b[1024:1028], []byte{0xe2, 0xe1, 0xf5, 0xe0}) {
			t.Fatalf("no erofs magic: % x", b[1024:1028])
		}
		return b
	}
	a := sha256.Sum256(build("a.erofs"))
	if fsck, err := exec.LookPath("fsck.erofs"); err == nil {
		x := filepath.Join(dir, "x")
		if out, err := exec.Command(fsck, "--extract="+x, filepath.Join(dir, "a.erofs")).CombinedOutput(); err != nil {
			t.Fatalf("fsck.erofs: %v\n%s", err, out)
		}
		got, err := os.ReadFile(filepath.Join(x, "app", "data"))
		if err != nil || !bytes.Equal(got, bytes.Repeat([]byte("0123456789"), 1000)) {
			t.Errorf("extracted app/data differs (%v)", err)
		}
	}
	time.Sleep(1100 * time.Millisecond) // a build-time stamp would now differ
	b := sha256.Sum256(build("b.erofs"))
	if a != b {
		t.Error("two builds of the same layer differ: the image digest cannot be reproduced")
	}
}
