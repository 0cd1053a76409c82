// Package tests holds the end-to-end tests: a private containerd, ctr and
// the scc shim booting real QEMU VMs with the guest image.
package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sccontainers/scc/internal/ctrd"
	"github.com/sccontainers/scc/internal/ocilayout"
)

const (
	runtimeName = "io.containerd.scc.v2"
	imageRef    = "scc.local/busybox:latest"
)

// env is the environment every end-to-end test shares.
var env struct {
	skip   string // why the tests cannot run here
	dir    string // everything the tests create
	run    string // the shim's state_dir
	logs   string // the shim's log_dir
	config string // the shim's config file
	binDir string
	ctrd   *ctrd.Daemon
}

func TestMain(m *testing.M) {
	code := func() int {
		if err := setup(); err != nil {
			fmt.Fprintln(os.Stderr, "end-to-end setup:", err)
			return 1
		}
		defer teardown()
		return m.Run()
	}()
	os.Exit(code)
}

// setup starts the private containerd, or records why the tests must skip.
// Where SCC_E2E_REQUIRED is set (make test, CI) a missing prerequisite is
// an error, never a skip.
func setup() error {
	reason := prerequisites()
	if reason != "" {
		if os.Getenv("SCC_E2E_REQUIRED") != "" {
			return fmt.Errorf("end-to-end prerequisites missing: %s", reason)
		}
		env.skip = reason
		return nil
	}
	dir, err := os.MkdirTemp("/tmp", "scc-e2e-")
	if err != nil {
		return err
	}
	env.dir = dir
	env.run = filepath.Join(dir, "run")
	env.logs = filepath.Join(dir, "logs")
	env.config = filepath.Join(dir, "scc.toml")
	// Tests boot their VMs; the snapshot tests turn templates on.
	cfg := fmt.Sprintf("state_dir = %q\nguest_dir = %q\n\n[snapshot]\nenabled = false\ndir = %q\n\n[vm]\nlog_dir = %q\nboot_timeout = \"90s\"\n",
		env.run, guestDir(), filepath.Join(dir, "snapshots"), env.logs)
	if err := os.WriteFile(env.config, []byte(cfg), 0o644); err != nil {
		return err
	}
	ctx := context.Background()
	env.ctrd, err = ctrd.Start(ctx, ctrd.Options{
		Dir:     filepath.Join(dir, "c"),
		BinDir:  containerdBin(),
		ShimDir: env.binDir,
		Env:     []string{"SCC_CONFIG=" + env.config},
	})
	if err != nil {
		return err
	}
	var img bytes.Buffer
	if err := ocilayout.WriteBusybox(&img, ocilayout.BusyboxOptions{Busybox: "/bin/busybox", Ref: imageRef}); err != nil {
		return err
	}
	cmd := env.ctrd.Ctr(ctx, "images", "import", "-")
	cmd.Stdin = &img
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("import busybox image: %v: %s", err, out)
	}
	return nil
}

func teardown() {
	if env.ctrd != nil {
		env.ctrd.Stop(context.Background())
	}
	if env.dir != "" {
		// Shims outlive containerd by design: after a failed test one may
		// still hold a VM. Nothing of the tests may stay on the machine.
		killAll(env.dir)
		ctrd.Clean(env.dir)
	}
}

// killAll kills every process whose command line or working directory
// names dir.
func killAll(dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if !usesDir(filepath.Dir(p), dir) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// usesDir reports whether the process of procDir (/proc/<pid>) names dir
// in its command line or works in it (a detached swtpm names its files
// relatively).
func usesDir(procDir, dir string) bool {
	if b, err := os.ReadFile(filepath.Join(procDir, "cmdline")); err == nil && bytes.Contains(b, []byte(dir)) {
		return true
	}
	cwd, err := os.Readlink(filepath.Join(procDir, "cwd"))
	return err == nil && strings.HasPrefix(cwd+"/", dir+"/")
}

func prerequisites() string {
	if os.Geteuid() != 0 {
		return "end-to-end tests need root (mounts, containerd)"
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return "qemu-system-x86_64 is not installed (make deps)"
	}
	env.binDir = os.Getenv("SCC_BIN")
	if env.binDir == "" {
		env.binDir, _ = filepath.Abs("../bin")
	}
	for _, f := range []string{
		filepath.Join(env.binDir, "containerd-shim-scc-v2"),
		filepath.Join(containerdBin(), "containerd"),
		filepath.Join(containerdBin(), "ctr"),
		filepath.Join(guestDir(), "manifest.json"),
		"/bin/busybox",
	} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Sprintf("%s is missing (make build guest containerd)", f)
		}
	}
	return ""
}

func guestDir() string {
	if d := os.Getenv("GUEST_DIR"); d != "" {
		return d
	}
	d, _ := filepath.Abs("../build/guest")
	return d
}

func containerdBin() string {
	if d := os.Getenv("CONTAINERD_BIN"); d != "" {
		return d
	}
	// The newest containerd that make containerd built.
	dirs, _ := filepath.Glob("/var/cache/scc/containerd-*/bin")
	if len(dirs) == 0 {
		return "/var/cache/scc/containerd/bin"
	}
	return dirs[len(dirs)-1]
}

// requireEnv skips the test where the end-to-end environment is missing
// and checks, when the test ends, that it left nothing behind.
func requireEnv(t *testing.T) {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
	t.Cleanup(func() { checkNoLeaks(t) })
}

// checkNoLeaks fails the test if a VM, a mount or a state directory
// outlives the containers.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		leaks := leaks()
		if len(leaks) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left behind: %s", strings.Join(leaks, "; "))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func leaks() []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && usesDir(filepath.Dir(p), env.run) {
			found = append(found, "process "+strings.ReplaceAll(string(bytes.TrimRight(b, "\x00")), "\x00", " "))
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], env.run) {
			found = append(found, "mount "+f[4])
		}
	}
	entries, _ := os.ReadDir(env.run)
	for _, e := range entries {
		found = append(found, "state "+filepath.Join(env.run, e.Name()))
	}
	return found
}

// ctr runs ctr against the private containerd and returns stdout, stderr
// and the exit code.
func ctr(t *testing.T, ctx context.Context, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := env.ctrd.Ctr(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("ctr %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// run is `ctr run --rm` with the scc runtime.
func run(t *testing.T, ctx context.Context, stdin, id string, args ...string) (string, string, int) {
	t.Helper()
	all := append([]string{"run", "--rm", "--runtime", runtimeName}, args[:len(args):len(args)]...)
	return ctr(t, ctx, stdin, splice(all, id)...)
}

// splice puts the image and container id between ctr run's flags and the
// command: args is [flags..., "--", cmd...].
func splice(all []string, id string) []string {
	for i, a := range all {
		if a == "--" {
			out := append([]string{}, all[:i]...)
			out = append(out, imageRef, id)
			return append(out, all[i+1:]...)
		}
	}
	return append(all, imageRef, id)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
