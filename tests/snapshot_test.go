package tests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// snapshotConfig writes a shim configuration with VM templates on, in a
// template directory of the test's own.
func snapshotConfig(t *testing.T, name string, autoCreate bool) (cfgPath, snapDir string) {
	t.Helper()
	b, err := os.ReadFile(env.config)
	if err != nil {
		t.Fatal(err)
	}
	snapDir = filepath.Join(env.dir, "snap-"+name)
	auto := "false"
	if autoCreate {
		auto = "true"
	}
	cfg := strings.Replace(string(b), "[snapshot]\nenabled = false\n", "[snapshot]\nenabled = true\nauto_create = "+auto+"\n", 1)
	cfg = strings.Replace(cfg, filepath.Join(env.dir, "snapshots"), snapDir, 1)
	cfgPath = filepath.Join(env.dir, name+".toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, snapDir
}

func scc(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, filepath.Join(env.binDir, "scc"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("scc %v: %v: %s", args, err, out)
	}
	return string(out)
}

// runDetachedWith starts a container with a given shim configuration and
// returns the command line of its VM.
func runDetachedWith(t *testing.T, ctx context.Context, cfgPath, id string, args ...string) string {
	t.Helper()
	startDetachedWith(t, ctx, cfgPath, id, args...)
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pidOf(t, "qemu-system", filepath.Join(env.run, id))), "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

// startDetachedWith starts a container with a given shim configuration,
// removed when the test ends.
func startDetachedWith(t *testing.T, ctx context.Context, cfgPath, id string, args ...string) {
	t.Helper()
	all := append([]string{"run", "-d", "--runtime", runtimeName, "--runtime-config-path", cfgPath, imageRef, id}, args...)
	if _, stderr, code := ctr(t, ctx, "", all...); code != 0 {
		t.Fatalf("ctr run -d: exit %d: %s", code, stderr)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		ctr(t, ctx, "", "task", "kill", "-s", "SIGKILL", id)
		waitStatus(t, ctx, id, "STOPPED")
		ctr(t, ctx, "", "task", "delete", id)
		ctr(t, ctx, "", "containers", "delete", id)
	})
}

// TestRestoreFromTemplate makes a template, starts two containers from it
// and checks they were restored, work, and share neither randomness nor a
// stale clock.
func TestRestoreFromTemplate(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	cfgPath, _ := snapshotConfig(t, "restore", false)
	scc(t, ctx, "snapshot", "create", "--config", cfgPath)
	if out := scc(t, ctx, "snapshot", "list", "--config", cfgPath); strings.Count(out, "\n") != 1 {
		t.Fatalf("want one template, have:\n%s", out)
	}
	restoreTwo(t, ctx, cfgPath, "restored")
}

// restoreTwo starts two containers of a configuration that has a
// template and checks they were restored, work, and share neither
// randomness nor a stale clock.
func restoreTwo(t *testing.T, ctx context.Context, cfgPath, prefix string) {
	t.Helper()
	outputs := map[string]string{}
	for _, id := range []string{prefix + "-a", prefix + "-b"} {
		cmdline := runDetachedWith(t, ctx, cfgPath, id, "sleep", "1000")
		if !strings.Contains(cmdline, "-incoming") {
			t.Errorf("%s: VM was booted, not restored: %s", id, cmdline)
		}
		stdout, stderr, code := ctr(t, ctx, "", "task", "exec", "--exec-id", "probe", id, "sh", "-c",
			"head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s")
		if code != 0 {
			t.Fatalf("%s: exec: %s", id, stderr)
		}
		lines := strings.Fields(stdout)
		if len(lines) != 2 {
			t.Fatalf("%s: unexpected output %q", id, stdout)
		}
		outputs[id] = lines[0]
		var guestNow int64
		for _, c := range lines[1] {
			guestNow = guestNow*10 + int64(c-'0')
		}
		if d := time.Now().Unix() - guestNow; d > 30 || d < -30 {
			t.Errorf("%s: guest clock off by %d s after restore", id, d)
		}
	}
	if outputs[prefix+"-a"] == outputs[prefix+"-b"] {
		t.Errorf("two VMs restored from one template read the same random bytes %s", outputs[prefix+"-a"])
	}
}

// TestTemplateCreatedOnFirstUse boots once with auto_create, waits for the
// background creation, and restores the next sandbox.
func TestTemplateCreatedOnFirstUse(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	cfgPath, _ := snapshotConfig(t, "auto", true)
	if _, stderr, code := ctr(t, ctx, "", "run", "--rm", "--runtime", runtimeName, "--runtime-config-path", cfgPath, imageRef, "auto-first", "true"); code != 0 {
		t.Fatalf("first run: %s", stderr)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(scc(t, ctx, "snapshot", "list", "--config", cfgPath), "snap-auto") {
		if time.Now().After(deadline) {
			t.Fatal("no template was created after the first sandbox booted")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if cmdline := runDetachedWith(t, ctx, cfgPath, "auto-second", "sleep", "1000"); !strings.Contains(cmdline, "-incoming") {
		t.Errorf("second sandbox was booted, not restored")
	}
}

// TestBrokenTemplateFallsBack corrupts a template (its state, or its
// memory file cut short): the sandbox boots
// instead (with a new vTPM where it has one), and the bad template is
// dropped.
func TestBrokenTemplateFallsBack(t *testing.T) {
	requireEnv(t)
	corruptState := func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "state"), []byte("not a VM state"), 0o600)
	}
	truncateMemory := func(dir string) error { return os.Truncate(filepath.Join(dir, "memory"), 1<<20) }
	for _, tc := range []struct {
		name, vm string
		damage   func(templateDir string) error
	}{
		{"plain", "", corruptState},
		{"vtpm", "tpm = true\n", corruptState},
		{"truncated memory", "", truncateMemory},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			id := "broken-" + strings.ReplaceAll(tc.name, " ", "-")
			cfgPath, snapDir := snapshotConfig(t, id, false)
			b, err := os.ReadFile(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(b), "[vm]\n", "[vm]\n"+tc.vm, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			scc(t, ctx, "snapshot", "create", "--config", cfgPath)
			states, _ := filepath.Glob(filepath.Join(snapDir, "*", "state"))
			if len(states) != 1 {
				t.Fatalf("want one template state, have %v", states)
			}
			if err := tc.damage(filepath.Dir(states[0])); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := ctr(t, ctx, "", "run", "--rm", "--runtime", runtimeName, "--runtime-config-path", cfgPath, imageRef, id, "echo", "booted")
			if code != 0 || strings.TrimSpace(stdout) != "booted" {
				t.Fatalf("run with a broken template: exit %d, %q, %s", code, stdout, stderr)
			}
			if out := scc(t, ctx, "snapshot", "list", "--config", cfgPath); strings.TrimSpace(out) != "" {
				t.Errorf("broken template kept:\n%s", out)
			}
		})
	}
}

// TestVTPM gives the VM a vTPM: the guest's monitor attests with it, and
// its swtpm goes with the VM. The guest kernel sees no TPM device: the
// vTPM is a channel only the monitor speaks to.
func TestVTPM(t *testing.T) {
	requireEnv(t)
	requireSwtpm(t)
	ctx := testContext(t)
	cfgPath := writeConfig(t, "tpm", "tpm = true\n")
	stdout, stderr, code := ctr(t, ctx, "", "run", "--rm", "--runtime", runtimeName, "--runtime-config-path", cfgPath, imageRef, "vtpm",
		"sh", "-c", "ls /sys/class/tpm | wc -l; cat /sys/class/virtio-ports/*/name")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	f := strings.Fields(stdout)
	if len(f) < 2 || f[0] != "0" || !strings.Contains(stdout, "io.scc.tpm") {
		t.Errorf("guest sees %q; want no TPM device and the vTPM's port", stdout)
	}
}
