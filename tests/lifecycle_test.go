package tests

import (
	"bufio"
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// startDetached runs a long-lived container and deletes it when the test
// ends.
func startDetached(t *testing.T, ctx context.Context, id string, args ...string) {
	t.Helper()
	all := append([]string{"run", "-d", "--runtime", runtimeName, imageRef, id}, args...)
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

// taskStatus returns the status column of `ctr task ls` for id.
func taskStatus(t *testing.T, ctx context.Context, id string) string {
	out, _, _ := ctr(t, ctx, "", "task", "ls")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

func waitStatus(t *testing.T, ctx context.Context, id, want string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if got := taskStatus(t, ctx, id); got == want || (want == "STOPPED" && got == "") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("task %s did not become %s (is %q)", id, want, taskStatus(t, ctx, id))
}

func TestExecPsPauseResume(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	const id = "lifecycle"
	startDetached(t, ctx, id, "sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.1; done")

	stdout, stderr, code := ctr(t, ctx, "", "task", "exec", "--exec-id", "e1", id, "sh", "-c", "echo from-exec; exit 5")
	if code != 5 || strings.TrimSpace(stdout) != "from-exec" {
		t.Errorf("exec: exit %d, stdout %q, stderr %q; want 5 and from-exec", code, stdout, stderr)
	}
	stdout, _, code = ctr(t, ctx, "hello exec stdin\n", "task", "exec", "--exec-id", "e2", id, "cat")
	if code != 0 || strings.TrimSpace(stdout) != "hello exec stdin" {
		t.Errorf("exec with stdin: exit %d, stdout %q", code, stdout)
	}

	ps, stderr, code := ctr(t, ctx, "", "task", "ps", id)
	if code != 0 {
		t.Fatalf("task ps: exit %d: %s", code, stderr)
	}
	if pids := regexp.MustCompile(`(?m)^\s*\d+`).FindAllString(ps, -1); len(pids) < 1 {
		t.Errorf("task ps lists no process:\n%s", ps)
	}

	if _, stderr, code := ctr(t, ctx, "", "task", "pause", id); code != 0 {
		t.Fatalf("pause: %s", stderr)
	}
	if got := taskStatus(t, ctx, id); got != "PAUSED" {
		t.Errorf("status after pause %q, want PAUSED", got)
	}
	if _, stderr, code := ctr(t, ctx, "", "task", "resume", id); code != 0 {
		t.Fatalf("resume: %s", stderr)
	}
	if got := taskStatus(t, ctx, id); got != "RUNNING" {
		t.Errorf("status after resume %q, want RUNNING", got)
	}

}

// TestKill runs a container with `ctr run` and signals it from outside: the
// exit status ctr run reports is the one the signal caused in the guest.
func TestKill(t *testing.T) {
	requireEnv(t)
	for _, tc := range []struct {
		signal string
		script string
		want   int
	}{
		// SIGTERM reaches the container's init, whose trap exits 42.
		{"SIGTERM", "trap 'exit 42' TERM; echo ready; while true; do sleep 0.1; done", 42},
		// Nothing survives SIGKILL: 128 + 9.
		{"SIGKILL", "echo ready; exec sleep 1000", 137},
	} {
		t.Run(tc.signal, func(t *testing.T) {
			ctx := testContext(t)
			id := "kill-" + strings.ToLower(tc.signal)
			cmd := env.ctrd.Ctr(ctx, "run", "--rm", "--runtime", runtimeName, imageRef, id, "sh", "-c", tc.script)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if cmd.ProcessState == nil {
					ctr(t, context.Background(), "", "task", "kill", "-s", "SIGKILL", id)
					cmd.Wait()
				}
			})
			// A signal sent before the trap is set would be ignored: PID 1
			// of a PID namespace has no default signal actions.
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || strings.TrimSpace(line) != "ready" {
				t.Fatalf("container did not get ready: %q %v", line, err)
			}
			if _, stderr, code := ctr(t, ctx, "", "task", "kill", "-s", tc.signal, id); code != 0 {
				t.Fatalf("kill: %s", stderr)
			}
			err = cmd.Wait()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.want {
				t.Errorf("exit status %d, want %d", code, tc.want)
			}
		})
	}
}
