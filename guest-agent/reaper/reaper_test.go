package reaper

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantState byte
		wantPPID  int
		wantErr   bool
	}{
		{name: "plain", in: "42 (sleep) S 1 42 42 0 -1", wantState: 'S', wantPPID: 1},
		{name: "zombie", in: "43 (sh) Z 7 43 43 0", wantState: 'Z', wantPPID: 7},
		{name: "name with spaces and parens", in: "44 (a) b (c)) Z 9 1 1", wantState: 'Z', wantPPID: 9},
		{name: "no paren", in: "45 sh Z 9", wantErr: true},
		{name: "truncated", in: "46 (sh) Z", wantErr: true},
		{name: "bad ppid", in: "47 (sh) Z x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, ppid, err := parseStat(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseStat(%q) = %c, %d, want error", tt.in, state, ppid)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if state != tt.wantState || ppid != tt.wantPPID {
				t.Fatalf("parseStat(%q) = %c, %d, want %c, %d", tt.in, state, ppid, tt.wantState, tt.wantPPID)
			}
		})
	}
}

// startZombie starts a child that exits with code and waits until it is a
// zombie, without reaping it.
func startZombie(t *testing.T, code int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "exit "+strconv.Itoa(code))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
		if err == nil {
			if state, _, err := parseStat(string(data)); err == nil && state == 'Z' {
				return cmd
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("pid %d did not become a zombie", cmd.Process.Pid)
	return nil
}

func reapedPid(list []Reaped, pid int) (Reaped, bool) {
	for _, r := range list {
		if r.Pid == pid {
			return r, true
		}
	}
	return Reaped{}, false
}

func TestReapUnclaimed(t *testing.T) {
	r := New()
	cmd := startZombie(t, 5)
	got, ok := reapedPid(r.Reap(), cmd.Process.Pid)
	if !ok {
		t.Fatalf("zombie %d not reaped", cmd.Process.Pid)
	}
	if got.Status != 5 {
		t.Fatalf("status = %d, want 5", got.Status)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(cmd.Process.Pid)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pid %d still exists after reaping: %v", cmd.Process.Pid, err)
	}
}

func TestReapLeavesClaimed(t *testing.T) {
	r := New()
	cmd := startZombie(t, 7)
	release := r.Claim(cmd.Process.Pid)
	if _, ok := reapedPid(r.Reap(), cmd.Process.Pid); ok {
		t.Fatal("claimed zombie was reaped")
	}
	err := cmd.Wait()
	release()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("owner's Wait = %v, want exit status 7", err)
	}
}

func TestClaimIsCounted(t *testing.T) {
	r := New()
	rel1 := r.Claim(10)
	rel2 := r.Claim(10)
	rel1()
	rel1() // a second call of the same release is a no-op
	if !r.isClaimed(10) {
		t.Fatal("pid released while a claim is left")
	}
	rel2()
	if r.isClaimed(10) {
		t.Fatal("pid still claimed after every release")
	}
}

func TestReapWaitsForHold(t *testing.T) {
	r := New()
	release := r.Hold()
	cmd := startZombie(t, 0)
	done := make(chan []Reaped, 1)
	go func() { done <- r.Reap() }()
	select {
	case <-done:
		release()
		t.Fatal("Reap ran while a spawn held it off")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	select {
	case list := <-done:
		if _, ok := reapedPid(list, cmd.Process.Pid); !ok {
			t.Fatalf("zombie %d not reaped after release", cmd.Process.Pid)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Reap did not run after release")
	}
}
