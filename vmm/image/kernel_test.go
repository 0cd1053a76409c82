package image

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseAptDepends(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    string
		wantErr bool
	}{
		{name: "debian 12", out: "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n", want: "linux-image-6.1.0-56-amd64"},
		{
			name: "alternatives and virtual packages",
			out:  "linux-image-amd64\n  Depends: <linux-image-virtual>\n |Depends: linux-image-6.12.9-amd64\n  Depends: linux-image-6.12.8-amd64\n  Recommends: firmware\n",
			want: "linux-image-6.12.9-amd64",
		},
		{name: "no kernel", out: "linux-image-amd64\n  Recommends: irqbalance\n", wantErr: true},
		{name: "empty", out: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAptDepends([]byte(tt.out))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseAptDepends() error = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseAptDepends() = %q, want %q", got, tt.want)
			}
		})
	}
}

func touch(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestKernelRelease(t *testing.T) {
	tests := []struct {
		name    string
		files   []string
		want    string
		wantErr bool
	}{
		{name: "one kernel", files: []string{"boot/vmlinuz-6.1.0-56-amd64", "lib/modules/6.1.0-56-amd64/modules.order"}, want: "6.1.0-56-amd64"},
		{name: "no image", files: []string{"lib/modules/6.1.0-56-amd64/modules.order"}, wantErr: true},
		{name: "two kernels", files: []string{"boot/vmlinuz-a", "lib/modules/a/x", "lib/modules/b/x"}, wantErr: true},
		{name: "no modules", files: []string{"boot/vmlinuz-a"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tt.files {
				touch(t, filepath.Join(root, f))
			}
			got, err := kernelRelease(root)
			if (err != nil) != tt.wantErr {
				t.Fatalf("kernelRelease() error = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("kernelRelease() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCachedDeb(t *testing.T) {
	dir := t.TempDir()
	const pkg = "linux-image-6.1.0-56-amd64"
	if got, err := cachedDeb(dir, pkg); err != nil || got != "" {
		t.Fatalf("cachedDeb(empty) = %q, %v", got, err)
	}
	for _, f := range []string{
		pkg + "_6.1.192-1_amd64.deb",
		pkg + "_6.1.192-2_amd64.deb",
		pkg + "-unsigned_6.1.192-3_amd64.deb", // another package
		"linux-image-amd64_6.1.192-2_amd64.deb",
	} {
		touch(t, filepath.Join(dir, f))
	}
	got, err := cachedDeb(dir, pkg)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, pkg+"_6.1.192-2_amd64.deb"); got != want {
		t.Errorf("cachedDeb() = %q, want %q", got, want)
	}
}
