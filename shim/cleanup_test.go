package shim

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestMain lets the test binary stand for a live shim: with
// SCC_TEST_SLEEP set it only sleeps.
func TestMain(m *testing.M) {
	if os.Getenv("SCC_TEST_SLEEP") != "" {
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestShimAlive(t *testing.T) {
	start := func(t *testing.T, name string, args []string, env ...string) int {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		return cmd.Process.Pid
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep program")
	}
	for _, tc := range []struct {
		name string
		pid  func(t *testing.T) string // "" writes no pid file
		want bool
	}{
		{"same program", func(t *testing.T) string {
			return strconv.Itoa(start(t, self, []string{"-test.run=^$"}, "SCC_TEST_SLEEP=1"))
		}, true},
		{"other program", func(t *testing.T) string { return strconv.Itoa(start(t, sleep, []string{"60"})) }, false},
		{"exited", func(t *testing.T) string {
			cmd := exec.Command(self, "-test.run=^$")
			if err := cmd.Run(); err != nil {
				t.Fatal(err)
			}
			return strconv.Itoa(cmd.Process.Pid)
		}, false},
		{"caller", func(t *testing.T) string { return strconv.Itoa(os.Getpid()) }, false},
		{"garbage", func(t *testing.T) string { return "shim" }, false},
		{"no file", func(t *testing.T) string { return "" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if pid := tc.pid(t); pid != "" {
				if err := os.WriteFile(filepath.Join(dir, shimPidFile), []byte(pid), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if got := shimAlive(dir); got != tc.want {
				t.Errorf("shimAlive = %v, want %v", got, tc.want)
			}
		})
	}
}
