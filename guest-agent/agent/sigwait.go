package agent

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// handlerGrace is how long after its start a container's program has to
// install its signal handlers before signals to it are sent regardless.
const handlerGrace = 2 * time.Second

// awaitHandler holds back signal sig to the init (pid) of a container
// with its own PID namespace, which started its program at started, until
// the program catches or ignores sig, exits, or handlerGrace since its
// start passed.
//
// The kernel discards a signal that the init of a PID namespace leaves at
// its default action (SIGKILL and SIGSTOP aside): sent before the program
// installed its handler, a SIGTERM is lost, and a stop waits out its whole
// timeout. That holds for every runtime, but a guest CPU is slower than
// the host's, emulated much slower, and the host's stop can come while
// the program is still starting: containerd stops a container within a
// millisecond of its start returning. Holding the signal a little delivers
// it as the program, had it started faster, would have received it. A
// program that never handles sig gets it after the grace, and loses it as
// it would with runc.
func awaitHandler(ctx context.Context, pid int, sig unix.Signal, started time.Time) {
	if sig <= 0 || sig == unix.SIGKILL || sig == unix.SIGSTOP || started.IsZero() {
		return
	}
	deadline := started.Add(handlerGrace)
	for delay := time.Millisecond; time.Now().Before(deadline); delay = min(2*delay, 20*time.Millisecond) {
		handled, err := handles(pid, sig)
		if err != nil || handled {
			return
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
	}
}

// handles reports whether process pid catches or ignores sig.
func handles(pid int, sig unix.Signal) (bool, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false, err
	}
	return signalHandled(string(b), sig)
}

// signalHandled reads the SigCgt and SigIgn masks of a /proc/<pid>/status
// text: whether sig is in either.
func signalHandled(status string, sig unix.Signal) (bool, error) {
	found := 0
	for _, line := range strings.Split(status, "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || (name != "SigCgt" && name != "SigIgn") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(value), 16, 64)
		if err != nil {
			return false, fmt.Errorf("parse %s: %w", name, err)
		}
		if mask&(1<<(uint(sig)-1)) != 0 {
			return true, nil
		}
		found++
	}
	if found != 2 {
		return false, fmt.Errorf("no SigCgt and SigIgn in process status")
	}
	return false, nil
}
