package monitor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// pfKthread is the kernel's PF_KTHREAD process flag.
const pfKthread = 0x00200000

// endStragglers ends every process but the monitor, the caller and kernel
// threads.
// Once the agent's PID namespace is gone there should be none: a process
// found here escaped it (or was started by the kernel for it). It fails
// when one outlives SIGKILL.
func endStragglers(procDir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		left, err := userProcesses(procDir)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			return nil
		}
		for _, pid := range left {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		reapAll() // when PID 1 calls it; the cleaner's are PID 1's to reap
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v outlive SIGKILL", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reapAll reaps the monitor's exited children without waiting: PID 1
// inherits every orphan.
func reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// userProcesses lists the processes of procDir but PID 1, the caller,
// kernel threads and zombies.
func userProcesses(procDir string) ([]int, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		state, flags, err := parseStat(string(b))
		if err != nil {
			return nil, fmt.Errorf("process %d: %w", pid, err)
		}
		if flags&pfKthread != 0 || state == "Z" || state == "X" {
			continue
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// parseStat returns the state and flags fields of /proc/<pid>/stat. They
// follow the command name, which is in parentheses and may hold any byte.
func parseStat(stat string) (state string, flags uint64, err error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return "", 0, errors.New("malformed stat")
	}
	// state ppid pgrp session tty_nr tpgid flags
	f := strings.Fields(stat[i+1:])
	if len(f) < 7 {
		return "", 0, errors.New("malformed stat")
	}
	flags, err = strconv.ParseUint(f[6], 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("malformed stat flags: %w", err)
	}
	return f[0], flags, nil
}
