package nodeinstall

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sccontainers/scc/shim"
	"github.com/sccontainers/scc/vmm/image"
)

// sourceTree makes what the install image holds: bin/ with both binaries
// and guest/ with an image whose manifest matches its files.
func sourceTree(t *testing.T, shimContent string) (binDir, guestDir string) {
	t.Helper()
	dir := t.TempDir()
	binDir, guestDir = filepath.Join(dir, "bin"), filepath.Join(dir, "guest")
	for _, d := range []string{binDir, guestDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(binDir, ShimBinary), shimContent, 0o755)
	write(t, filepath.Join(binDir, ToolBinary), "scc tool", 0o755)
	kernel, bz, initrd, cmdline := "a kernel", "a bzImage", "an initrd", image.DefaultCmdline
	write(t, filepath.Join(guestDir, image.VmlinuxName), kernel, 0o644)
	write(t, filepath.Join(guestDir, image.VmlinuzName), bz, 0o644)
	write(t, filepath.Join(guestDir, image.InitrdName), initrd, 0o644)
	m := image.Manifest{
		Version:       image.ManifestVersion,
		Kernel:        image.File{Path: image.VmlinuxName, SHA256: digest([]byte(kernel))},
		EFIKernel:     image.File{Path: image.VmlinuzName, SHA256: digest([]byte(bz))},
		Initrd:        image.File{Path: image.InitrdName, SHA256: digest([]byte(initrd))},
		Cmdline:       cmdline,
		CmdlineSHA256: digest([]byte(cmdline)),
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(guestDir, image.ManifestName), string(b), 0o644)
	return binDir, guestDir
}

func write(t *testing.T, p, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// hostRoot is a fake host root with the directories every host has.
func hostRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"usr/local/bin", "etc", "var/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// tree records every entry under root: directories, symlinks and files
// with their modes and contents.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			m[rel] = "dir " + fi.Mode().String()
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			m[rel] = "link " + target
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			m[rel] = fi.Mode().String() + " " + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func diffTrees(t *testing.T, got, want map[string]string) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			t.Errorf("%s missing", k)
		} else if g != want[k] {
			t.Errorf("%s is\n%s\nwant\n%s", k, g, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("%s left behind: %.80s", k, got[k])
		}
	}
}

func TestInstallUninstall(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, root string)
		opts  func(*Options)
		// plugin and version are where the runtime must end up.
		plugin  string
		version int64
	}{
		{
			name:    "bare host",
			plugin:  criPluginV2,
			version: 2,
		},
		{
			name:    "bare host, version 3 asked",
			opts:    func(o *Options) { o.ContainerdConfigVersion = 3 },
			plugin:  criPluginV3,
			version: 3,
		},
		{
			name: "containerd 1.x config with other runtimes",
			setup: func(t *testing.T, root string) {
				write(t, filepath.Join(root, "etc/containerd/config.toml"), configV2, 0o600)
			},
			plugin:  criPluginV2,
			version: 2,
		},
		{
			name: "containerd 2.x config, earlier files of the administrator",
			setup: func(t *testing.T, root string) {
				write(t, filepath.Join(root, "etc/containerd/config.toml"), configV3, 0o644)
				write(t, filepath.Join(root, "usr/local/bin/scc"), "an older scc", 0o755)
				write(t, filepath.Join(root, "etc/scc/config.toml"), "state_dir = \"/run/scc-admin\"\n", 0o644)
			},
			plugin:  criPluginV3,
			version: 3,
		},
		{
			name: "config reached through an absolute symlink",
			setup: func(t *testing.T, root string) {
				write(t, filepath.Join(root, "srv/containerd.toml"), configV4NoNewline, 0o644)
				if err := os.MkdirAll(filepath.Join(root, "etc/containerd"), 0o755); err != nil {
					t.Fatal(err)
				}
				// Absolute on the host: it must resolve inside the root.
				if err := os.Symlink("/srv/containerd.toml", filepath.Join(root, "etc/containerd/config.toml")); err != nil {
					t.Fatal(err)
				}
			},
			plugin:  criPluginV3,
			version: 4,
		},
		{
			name: "containerd 2.x config with a confidential handler",
			setup: func(t *testing.T, root string) {
				write(t, filepath.Join(root, "etc/containerd/config.toml"), configV3, 0o644)
				write(t, filepath.Join(root, "etc/scc/confidential.toml"), "[confidential]\nenabled = true\n", 0o644)
			},
			opts:    func(o *Options) { o.ConfidentialConfig = "/etc/scc/confidential.toml" },
			plugin:  criPluginV3,
			version: 3,
		},
		{
			name: "the shim as sandboxer",
			setup: func(t *testing.T, root string) {
				write(t, filepath.Join(root, "etc/containerd/config.toml"), configV3, 0o644)
			},
			opts:    func(o *Options) { o.Sandboxer = SandboxerShim },
			plugin:  criPluginV3,
			version: 3,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			root := hostRoot(t)
			if tc.setup != nil {
				tc.setup(t, root)
			}
			before := tree(t, root)
			bin, guest := sourceTree(t, "shim v1")
			o := Options{Root: root, BinSource: bin, GuestSource: guest}
			if tc.opts != nil {
				tc.opts(&o)
			}

			rep, err := Install(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.ContainerdChanged {
				t.Error("install did not report the containerd change")
			}
			for _, p := range []string{"usr/local/bin/containerd-shim-scc-v2", "usr/local/bin/scc", "var/lib/scc/guest/vmlinux", "var/lib/scc/guest/vmlinuz", "var/lib/scc/guest/initrd.img", "var/lib/scc/guest/manifest.json", "etc/scc/config.toml"} {
				if _, err := os.Stat(filepath.Join(root, p)); err != nil {
					t.Errorf("not installed: %v", err)
				}
			}
			if fi, err := os.Stat(filepath.Join(root, "usr/local/bin", ShimBinary)); err == nil && fi.Mode().Perm() != 0o755 {
				t.Errorf("shim mode %v", fi.Mode())
			}
			m, err := image.Load(filepath.Join(root, "var/lib/scc/guest"))
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Verify(); err != nil {
				t.Errorf("installed guest image: %v", err)
			}
			cfg, err := (host{root: root}).readFile(DefaultContainerdConfig)
			if err != nil {
				t.Fatal(err)
			}
			checkLoads(t, cfg, tc.plugin, tc.version,
				RuntimeOptions{ShimPath: "/usr/local/bin/containerd-shim-scc-v2", ConfigPath: "/etc/scc/config.toml", Sandboxer: o.Sandboxer})
			if o.ConfidentialConfig != "" {
				checkConfidential(t, cfg, tc.plugin, o.ConfidentialConfig, []string{"overlayfs", "scc"})
				unit, err := os.ReadFile(filepath.Join(root, SnapshotterUnit))
				if err != nil {
					t.Fatalf("snapshotter unit: %v", err)
				}
				if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/scc snapshotter ") {
					t.Errorf("unit does not run the installed scc:\n%s", unit)
				}
			} else if _, err := os.Stat(filepath.Join(root, SnapshotterUnit)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("snapshotter unit installed without a confidential handler: %v", err)
			}
			if fi, err := os.Lstat(filepath.Join(root, "etc/containerd/config.toml")); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
				if _, err := os.Stat(filepath.Join(root, "srv/containerd.toml")); err != nil {
					t.Error(err)
				}
			}

			installed := tree(t, root)
			rep, err = Install(ctx, o)
			if err != nil {
				t.Fatalf("second install: %v", err)
			}
			if len(rep.Changed) != 0 || rep.ContainerdChanged {
				t.Errorf("second install changed %v", rep.Changed)
			}
			diffTrees(t, tree(t, root), installed)

			rep, err = Uninstall(ctx, Options{Root: root})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.ContainerdChanged {
				t.Error("uninstall did not report the containerd change")
			}
			diffTrees(t, tree(t, root), before)
		})
	}
}

// TestInstallKeepsAdministratorFiles checks what install does to files that
// are not its own: a binary is moved aside and comes back, the shim config
// stays as it is.
func TestInstallKeepsAdministratorFiles(t *testing.T) {
	ctx := context.Background()
	root := hostRoot(t)
	write(t, filepath.Join(root, "usr/local/bin/scc"), "an older scc", 0o755)
	write(t, filepath.Join(root, "etc/scc/config.toml"), "state_dir = \"/run/mine\"\n", 0o644)
	bin, guest := sourceTree(t, "shim v1")
	if _, err := Install(ctx, Options{Root: root, BinSource: bin, GuestSource: guest}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "usr/local/bin/scc")); string(b) != "scc tool" {
		t.Errorf("scc is %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "usr/local/bin/scc"+backupSuffix)); string(b) != "an older scc" {
		t.Errorf("backup is %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/scc/config.toml")); string(b) != "state_dir = \"/run/mine\"\n" {
		t.Errorf("the administrator's shim config was replaced: %q", b)
	}
}

// TestInstallUpdate checks that a newer shim replaces install's own older
// one, and that uninstall leaves a file changed by someone else.
func TestInstallUpdate(t *testing.T) {
	ctx := context.Background()
	root := hostRoot(t)
	before := tree(t, root)
	bin, guest := sourceTree(t, "shim v1")
	if _, err := Install(ctx, Options{Root: root, BinSource: bin, GuestSource: guest}); err != nil {
		t.Fatal(err)
	}
	bin2, guest2 := sourceTree(t, "shim v2")
	rep, err := Install(ctx, Options{Root: root, BinSource: bin2, GuestSource: guest2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Changed) != 1 || rep.ContainerdChanged {
		t.Errorf("update changed %v", rep.Changed)
	}
	shimPath := filepath.Join(root, "usr/local/bin", ShimBinary)
	if b, _ := os.ReadFile(shimPath); string(b) != "shim v2" {
		t.Errorf("shim is %q", b)
	}
	if _, err := os.Stat(shimPath + backupSuffix); err == nil {
		t.Error("install backed up its own file")
	}

	// The administrator edits the shim config: uninstall keeps it.
	edited := "# mine now\n"
	write(t, filepath.Join(root, "etc/scc/config.toml"), edited, 0o644)
	rep, err = Uninstall(ctx, Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Notes) == 0 {
		t.Error("uninstall did not say what it left")
	}
	want := maps.Clone(before)
	fi, err := os.Stat(filepath.Join(root, "etc/scc"))
	if err != nil {
		t.Fatal(err)
	}
	want["etc/scc"] = "dir " + fi.Mode().String()
	want["etc/scc/config.toml"] = "-rw-r--r-- " + edited
	diffTrees(t, tree(t, root), want)
}

// TestInstallRefusesBadContainerdConfig checks that nothing at all is
// written when the containerd config cannot be edited.
func TestInstallRefusesBadContainerdConfig(t *testing.T) {
	for name, cfg := range map[string]string{
		"unparsable": "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"\n",
		"version 1":  "[plugins.cri]\n  sandbox_image = \"pause\"\n",
		"scc by hand": configV2 + "      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.scc]\n" +
			"        runtime_type = \"io.containerd.scc.v2\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			root := hostRoot(t)
			write(t, filepath.Join(root, "etc/containerd/config.toml"), cfg, 0o644)
			before := tree(t, root)
			bin, guest := sourceTree(t, "shim v1")
			_, err := Install(context.Background(), Options{Root: root, BinSource: bin, GuestSource: guest})
			if err == nil {
				t.Fatal("install accepted the config")
			}
			diffTrees(t, tree(t, root), before)
		})
	}
}

func TestInstallRefusesBadSources(t *testing.T) {
	for name, breakIt := range map[string]func(bin, guest string){
		"no shim":             func(bin, _ string) { os.Remove(filepath.Join(bin, ShimBinary)) },
		"no guest image":      func(_, guest string) { os.Remove(filepath.Join(guest, image.ManifestName)) },
		"kernel not manifest": func(_, guest string) { os.WriteFile(filepath.Join(guest, image.VmlinuxName), []byte("other"), 0o644) },
	} {
		t.Run(name, func(t *testing.T) {
			root := hostRoot(t)
			before := tree(t, root)
			bin, guest := sourceTree(t, "shim v1")
			breakIt(bin, guest)
			if _, err := Install(context.Background(), Options{Root: root, BinSource: bin, GuestSource: guest}); err == nil {
				t.Fatal("install accepted broken sources")
			}
			diffTrees(t, tree(t, root), before)
		})
	}
}

// TestUninstallWithoutRecord removes the runtime handler even when the
// install record is gone.
func TestUninstallWithoutRecord(t *testing.T) {
	ctx := context.Background()
	root := hostRoot(t)
	write(t, filepath.Join(root, "etc/containerd/config.toml"), configV3, 0o644)
	bin, guest := sourceTree(t, "shim v1")
	if _, err := Install(ctx, Options{Root: root, BinSource: bin, GuestSource: guest}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, DefaultStatePath)); err != nil {
		t.Fatal(err)
	}
	if _, err := Uninstall(ctx, Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/containerd/config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != configV3 {
		t.Errorf("config after uninstall:\n%s", b)
	}
}

// TestDefaultShimConfigLoads checks the written shim configuration with
// the shim's own loader.
func TestDefaultShimConfigLoads(t *testing.T) {
	b, err := shimConfig("/opt/scc/guest")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.toml")
	write(t, p, string(b), 0o644)
	cfg, err := shim.LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GuestDir != "/opt/scc/guest" {
		t.Errorf("guest_dir %q", cfg.GuestDir)
	}
	def := shim.DefaultConfig()
	def.GuestDir = cfg.GuestDir
	if cfg.StateDir != def.StateDir || cfg.VM.QEMU != def.VM.QEMU || cfg.VM.VCPUs != def.VM.VCPUs || cfg.VM.MemoryMiB != def.VM.MemoryMiB || cfg.Snapshot != def.Snapshot {
		t.Errorf("written config %+v differs from the defaults %+v", cfg, def)
	}
}

func TestRestartHint(t *testing.T) {
	root := t.TempDir()
	if h := RestartHint(root); strings.Contains(h, "systemctl") {
		t.Errorf("hint without systemd: %s", h)
	}
	if err := os.MkdirAll(filepath.Join(root, "run/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	if h := RestartHint(root); !strings.Contains(h, "systemctl restart containerd") {
		t.Errorf("hint with systemd: %s", h)
	}
}

func TestOptionsValidation(t *testing.T) {
	for name, o := range map[string]Options{
		"relative root":     {Root: "host"},
		"missing root":      {Root: "/nonexistent-scc-root"},
		"relative bin dir":  {Root: "/", BinDir: "bin"},
		"relative ctr conf": {Root: "/", ContainerdConfig: "config.toml"},
	} {
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	_, err := Install(context.Background(), Options{Root: "relative"})
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("install with a relative root: %v", err)
	}
}
