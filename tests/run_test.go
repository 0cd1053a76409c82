package tests

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
)

func TestRunExitCodeAndOutput(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	stdout, stderr, code := run(t, ctx, "", "exit-code", "--", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
	if code != 3 {
		t.Errorf("exit code %d, want 3 (stderr: %s)", code, stderr)
	}
	if strings.TrimSpace(stdout) != "to-stdout" {
		t.Errorf("stdout %q, want to-stdout", stdout)
	}
	if !strings.Contains(stderr, "to-stderr") {
		t.Errorf("stderr %q does not contain to-stderr", stderr)
	}
}

func TestRunsInVM(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	var host runtimeUname
	host.read(t)
	stdout, stderr, code := run(t, ctx, "", "in-vm", "--", "uname", "-r")
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	guest := strings.TrimSpace(stdout)
	if guest == "" || guest == host.release {
		t.Errorf("guest kernel release %q must differ from the host's %q", guest, host.release)
	}
}

type runtimeUname struct{ release string }

func (u *runtimeUname) read(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	u.release = strings.TrimSpace(string(b))
}

func TestStdin(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	input := strings.Repeat("line of input\n", 2000) // larger than one pipe buffer
	stdout, stderr, code := run(t, ctx, input, "stdin", "--", "sh", "-c", "wc -l; exit 0")
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	if strings.TrimSpace(stdout) != "2000" {
		t.Errorf("container counted %q lines, want 2000", strings.TrimSpace(stdout))
	}
}

func TestLargeOutput(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	// 1 MiB of output written just before exit must all arrive.
	stdout, stderr, code := run(t, ctx, "", "large-output", "--", "sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x")
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	if len(stdout) != 1<<20 || strings.Trim(stdout, "x") != "" {
		t.Errorf("got %d bytes of output, want 1048576 x", len(stdout))
	}
}

func TestTwoContainersAtOnce(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	var wg sync.WaitGroup
	outs := make([]string, 2)
	codes := make([]int, 2)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := []string{"twin-a", "twin-b"}[i]
			outs[i], _, codes[i] = run(t, ctx, "", id, "--", "sh", "-c", "echo "+id)
		}()
	}
	wg.Wait()
	for i, id := range []string{"twin-a", "twin-b"} {
		if codes[i] != 0 || strings.TrimSpace(outs[i]) != id {
			t.Errorf("%s: exit %d, output %q", id, codes[i], outs[i])
		}
	}
}

func TestTTY(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	out, code := runWithPty(t, ctx, "tty", "sh", "-c", "tty; stty size")
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, out)
	}
	if !strings.Contains(out, "/dev/pts/") {
		t.Errorf("container has no terminal: %q", out)
	}
	if !strings.Contains(out, "40 120") {
		t.Errorf("terminal size not forwarded (want 40 120): %q", out)
	}
}

func TestBadInput(t *testing.T) {
	requireEnv(t)
	rt := []string{"run", "--runtime", runtimeName}
	for _, tc := range []struct {
		name string
		args func(id string) []string
		want string
	}{
		{"missing binary", func(id string) []string {
			return append(rt, imageRef, id, "/no/such/binary")
		}, "no such file"},
		{"missing rootfs", func(id string) []string {
			return append(rt, "--rootfs", "/nonexistent-rootfs", id, "sh")
		}, "rootfs"},
		{"malformed spec", func(id string) []string {
			return append(rt, "--config", malformedSpec(t), id)
		}, "spec"},
		{"bad kernel", func(id string) []string {
			return append(rt, "--runtime-config-path", badKernelConfig(t), imageRef, id, "true")
		}, "kernel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			id := "bad-" + strings.ReplaceAll(tc.name, " ", "-")
			_, stderr, code := ctr(t, ctx, "", tc.args(id)...)
			if code == 0 {
				t.Fatalf("ctr run succeeded, want an error")
			}
			if !strings.Contains(strings.ToLower(stderr), tc.want) {
				t.Errorf("error %q does not mention %q", strings.TrimSpace(stderr), tc.want)
			}
			cleanupContainer(t, id)
		})
	}
}

// malformedSpec writes an OCI spec whose process has no arguments.
func malformedSpec(t *testing.T) string {
	p := env.dir + "/malformed-spec.json"
	spec := `{"ociVersion":"1.2.0","process":{"cwd":"/","args":[]},"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}`
	if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func badKernelConfig(t *testing.T) string {
	return writeConfig(t, "bad-kernel", "kernel = \"/nonexistent/vmlinux\"\n")
}

// cleanupContainer removes what a failed ctr run leaves in containerd's
// metadata (the container record), as a user would.
func cleanupContainer(t *testing.T, id string) {
	ctx := context.Background()
	ctr(t, ctx, "", "task", "delete", "--force", id)
	ctr(t, ctx, "", "containers", "delete", id)
}
