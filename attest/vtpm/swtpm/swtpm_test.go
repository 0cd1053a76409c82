package swtpm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
)

func requiresSwtpm(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(Binary); err != nil {
		t.Skipf("swtpm binary not installed (apt-get install swtpm): %v", err)
	}
}

// start runs an emulator in a fresh directory and stops it at cleanup.
func start(t *testing.T, opts ...Option) *Swtpm {
	t.Helper()
	requiresSwtpm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := StartSwtpm(ctx, t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("StartSwtpm: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s
}

// gone reports whether pid no longer runs (absent, or a zombie waiting
// for a reaper that is not us).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("swtpm pid %d still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStartStop(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []Option
		wantCmd bool
	}{
		{name: "control only (QEMU)", opts: nil},
		{name: "with command socket", opts: []Option{WithCommandSocket()}, wantCmd: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, tc.opts...)
			if fi, err := os.Stat(s.CtrlPath); err != nil || fi.Mode()&os.ModeSocket == 0 {
				t.Fatalf("control socket %s: %v", s.CtrlPath, err)
			}
			if (s.CmdPath != "") != tc.wantCmd {
				t.Fatalf("CmdPath = %q, want set: %v", s.CmdPath, tc.wantCmd)
			}
			pid := s.Pid()
			if gone(pid) {
				t.Fatalf("swtpm pid %d not running after start", pid)
			}
			if err := s.Stop(); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if !gone(pid) {
				t.Errorf("swtpm pid %d still running after Stop", pid)
			}
			for _, p := range []string{s.CtrlPath, s.CmdPath} {
				if p == "" {
					continue
				}
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("socket %s left after Stop: %v", p, err)
				}
			}
			if err := s.Stop(); err != nil {
				t.Errorf("second Stop: %v", err)
			}
		})
	}
}

func TestOpenTPMRoundTrip(t *testing.T) {
	s := start(t, WithCommandSocket())
	tpm, err := s.OpenTPM()
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	// Several commands on one connection, including a response larger
	// than a header, prove the framing.
	for i := 0; i < 3; i++ {
		rsp, err := tpm2.GetRandom{BytesRequested: 32}.Execute(tpm)
		if err != nil {
			t.Fatalf("GetRandom: %v", err)
		}
		if len(rsp.RandomBytes.Buffer) != 32 {
			t.Fatalf("GetRandom returned %d bytes", len(rsp.RandomBytes.Buffer))
		}
	}
}

func TestOpenTPMWithoutCommandSocket(t *testing.T) {
	s := start(t)
	if _, err := s.OpenTPM(); err == nil {
		t.Fatal("OpenTPM succeeded on a QEMU-mode emulator")
	}
}

func TestStateKeptAcrossRestart(t *testing.T) {
	requiresSwtpm(t)
	dir := t.TempDir()
	ctx := context.Background()
	s, err := StartSwtpm(ctx, dir, WithCommandSocket())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tpm2-00.permall")); err != nil {
		t.Fatalf("no persistent TPM state after Stop: %v", err)
	}
	s2, err := StartSwtpm(ctx, dir, WithCommandSocket())
	if err != nil {
		t.Fatalf("restart on existing state: %v", err)
	}
	if err := s2.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestSocketPathTooLong(t *testing.T) {
	requiresSwtpm(t)
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	if _, err := StartSwtpm(context.Background(), dir); err == nil {
		t.Fatal("StartSwtpm accepted a socket path longer than sun_path")
	}
}

func TestQEMUArgs(t *testing.T) {
	s := &Swtpm{CtrlPath: "/run/a,b/ctrl.sock"}
	got := strings.Join(s.QEMUArgs("tpm0"), " ")
	want := "-chardev socket,id=chrtpm0,path=/run/a,,b/ctrl.sock -tpmdev emulator,id=tpm0,chardev=chrtpm0 -device tpm-crb,tpmdev=tpm0"
	if got != want {
		t.Errorf("QEMUArgs = %q\nwant %q", got, want)
	}
}

// TestQEMUAttach boots no guest but has QEMU attach a CRB TPM to the
// emulator with QEMUArgs, which fails at start if the control channel
// does not speak QEMU's protocol.
func TestQEMUAttach(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skipf("qemu-system-x86_64 not installed: %v", err)
	}
	s := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"-M", "q35", "-S", "-nodefaults", "-display", "none", "-monitor", "stdio"}, s.QEMUArgs("tpm0")...)
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.Stdin = strings.NewReader("info tpm\nquit\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "type=emulator,chardev=chrtpm0") {
		t.Fatalf("qemu did not report the emulated TPM:\n%s", out)
	}
	// QEMU shuts the emulator down as it quits; Stop copes with that.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, s.Pid())
}

// TestDiesWithParent starts the emulator from a child process, kills
// that child with SIGKILL (no chance to call Stop) and expects the
// emulator to die too.
func TestDiesWithParent(t *testing.T) {
	requiresSwtpm(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SWTPM_HELPER_DIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	sc := bufio.NewScanner(out)
	pid := 0
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "swtpm-pid="); ok {
			pid, _ = strconv.Atoi(v)
			break
		}
	}
	if pid == 0 {
		t.Fatalf("helper did not report the emulator's pid: %v", sc.Err())
	}
	if gone(pid) {
		t.Fatalf("emulator %d not running while its parent lives", pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitGone(t, pid)
}

// TestMain runs the test binary as the parent process of
// TestDiesWithParent when SWTPM_HELPER_DIR is set, and the tests otherwise.
func TestMain(m *testing.M) {
	if dir := os.Getenv("SWTPM_HELPER_DIR"); dir != "" {
		helperParent(dir)
	}
	os.Exit(m.Run())
}

// helperParent starts swtpm and waits to be killed by TestDiesWithParent.
func helperParent(dir string) {
	s, err := StartSwtpm(context.Background(), dir)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Printf("swtpm-pid=%d\n", s.Pid())
	time.Sleep(time.Minute) // killed by the parent test
	os.Exit(1)
}

// A detached emulator keeps working, and is found, after its directory
// is renamed.
func TestDetachedFollowsRename(t *testing.T) {
	requiresSwtpm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	s, err := StartSwtpm(ctx, a, WithCommandSocket(), Detached())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	if got := ProcessOf(a); got != s.Pid() {
		t.Fatalf("ProcessOf(%s) = %d, want %d", a, got, s.Pid())
	}
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	if got := ProcessOf(b); got != s.Pid() {
		t.Fatalf("after rename: ProcessOf(%s) = %d, want %d", b, got, s.Pid())
	}
	if got := ProcessOf(t.TempDir()); got != 0 {
		t.Errorf("ProcessOf of another directory = %d", got)
	}
	moved := &Swtpm{CmdPath: filepath.Join(b, CmdSocketName)}
	tpm, err := moved.OpenTPM()
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUState}).Execute(tpm); err != nil {
		t.Fatalf("TPM2_Shutdown after rename: %v", err)
	}
	// The state was saved in the directory's new place.
	if _, err := os.Stat(filepath.Join(b, "tpm2-00.permall")); err != nil {
		t.Errorf("state after rename: %v", err)
	}
}
