package tests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startReady starts `ctr run --rm` with a shell that prints "ready" and
// then sleeps, and returns once the container is ready.
func startReady(t *testing.T, ctx context.Context, id string) *exec.Cmd {
	t.Helper()
	cmd := env.ctrd.Ctr(ctx, "run", "--rm", "--runtime", runtimeName, imageRef, id, "sh", "-c", "echo ready; exec sleep 1000")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			ctr(t, context.Background(), "", "task", "kill", "-s", "SIGKILL", id)
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("ctr run stderr: %s", stderr.String())
		}
		cleanupContainer(t, id)
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("container did not get ready: %q %v", line, err)
	}
	return cmd
}

// pidOf returns the pid of the one process whose command line contains
// all of the given strings.
func pidOf(t *testing.T, parts ...string) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		match := true
		for _, part := range parts {
			match = match && bytes.Contains(b, []byte(part))
		}
		if match {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	t.Fatalf("no process with %v in its command line", parts)
	return 0
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

func waitCmd(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return exitCode(t, err)
	case <-time.After(time.Minute):
		t.Fatal("ctr run did not return")
		return -1
	}
}

// TestKillVM kills QEMU under a running container: the container is
// reported killed and the sandbox is cleaned up.
func TestKillVM(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	const id = "fault-vm"
	cmd := startReady(t, ctx, id)
	qemu := pidOf(t, "qemu-system", filepath.Join(env.run, id))
	if err := syscall.Kill(qemu, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := waitCmd(t, cmd); code != 137 {
		t.Errorf("exit status %d after the VM died, want 137", code)
	}
	if _, err := os.Stat(filepath.Join(env.logs, id+".console.log")); err != nil {
		t.Errorf("console log of the dead VM not kept: %v", err)
	}
}

// TestKillShim kills the shim under a running container: QEMU dies with it
// and containerd's cleanup (the shim's delete action) removes the rest.
func TestKillShim(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	const id = "fault-shim"
	cmd := startReady(t, ctx, id)
	shim := pidOf(t, "containerd-shim-scc-v2", "-id\x00"+id+"\x00")
	qemu := pidOf(t, "qemu-system", filepath.Join(env.run, id))
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitCmd(t, cmd)
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(qemu, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("QEMU outlived its shim")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGuestNeverBoots gives the VM a kernel that is no kernel, and a guest
// that panics before its agent runs: the error says what happened, and
// nothing is left.
func TestGuestNeverBoots(t *testing.T) {
	requireEnv(t)
	notKernel := filepath.Join(env.dir, "not-a-kernel")
	if err := os.WriteFile(notKernel, bytes.Repeat([]byte{0x90}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, vm string
		want     []string
	}{
		{"not a kernel", "kernel = \"" + notKernel + "\"\n", []string{"VM"}},
		// The kernel finds no init in the initramfs and panics.
		{"no init", "kernel_params = [\"rdinit=/none\"]\n", []string{"VM exited", "panic"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			cfgPath := writeConfig(t, strings.ReplaceAll(tc.name, " ", "-"), tc.vm)
			id := "no-boot-" + strings.ReplaceAll(tc.name, " ", "-")
			_, stderr, code := ctr(t, ctx, "", "run", "--runtime", runtimeName, "--runtime-config-path", cfgPath, imageRef, id, "true")
			cleanupContainer(t, id)
			if code == 0 {
				t.Fatal("ctr run succeeded with a VM that cannot boot")
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("error does not mention %q: %s", w, stderr)
				}
			}
		})
	}
}

// writeConfig writes a shim configuration: the tests' own, with vm added
// to its [vm] table.
func writeConfig(t *testing.T, name, vm string) string {
	t.Helper()
	b, err := os.ReadFile(env.config)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(env.dir, name+".toml")
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), "[vm]\n", "[vm]\n"+vm, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
