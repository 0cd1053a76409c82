package sched

import (
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSetNice(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := SetNice(cmd.Process.Pid, 7); err != nil {
		t.Fatal(err)
	}
	// getpriority returns 20 - nice.
	p, err := unix.Getpriority(unix.PRIO_PROCESS, cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if 20-p != 7 {
		t.Errorf("nice %d, want 7", 20-p)
	}
	if os.Geteuid() == 0 {
		// Raising priority back needs CAP_SYS_NICE, which the shim has.
		if err := SetNice(cmd.Process.Pid, 0); err != nil {
			t.Fatal(err)
		}
		if p, _ := unix.Getpriority(unix.PRIO_PROCESS, cmd.Process.Pid); 20-p != 0 {
			t.Errorf("nice %d after reset, want 0", 20-p)
		}
	}
	if err := SetNice(1<<30, 0); err == nil {
		t.Error("SetNice of a missing process succeeded")
	}
}
