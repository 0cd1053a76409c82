// Package sched sets the CPU priority of whole processes.
package sched

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// SetNice gives every thread of process pid the nice value n. Linux keeps
// a nice value per thread, and a new thread inherits its creator's, so a
// process reniced this way stays so; threads that exit meanwhile are
// skipped.
func SetNice(pid, n int) error {
	tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		return fmt.Errorf("set nice of %d: %w", pid, err)
	}
	var errs []error
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, n); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("set nice of thread %d: %w", tid, err))
		}
	}
	return errors.Join(errs...)
}
