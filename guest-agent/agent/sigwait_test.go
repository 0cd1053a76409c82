package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSignalHandled(t *testing.T) {
	const status = "Name:\ttop\nSigQ:\t0/1749\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigIgn:\t%s\nSigCgt:\t%s\n"
	for _, tc := range []struct {
		name    string
		ign     string
		cgt     string
		sig     unix.Signal
		handled bool
	}{
		{"default", "0000000000000000", "0000000000000000", unix.SIGTERM, false},
		{"caught", "0000000000000000", "0000000003807a27", unix.SIGTERM, true},
		{"ignored", "0000000000004000", "0000000000000000", unix.SIGTERM, true},
		{"other caught", "0000000000000000", "0000000000000002", unix.SIGTERM, false},
		{"rt caught", "0000000000000000", "8000000000000000", unix.Signal(64), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := signalHandled(fmt.Sprintf(status, tc.ign, tc.cgt), tc.sig)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.handled {
				t.Errorf("handled = %v, want %v", got, tc.handled)
			}
		})
	}
	if _, err := signalHandled("Name:\ttop\n", unix.SIGTERM); err == nil {
		t.Error("a status without masks was read")
	}
}

// TestAwaitHandler holds a signal back until a process catches it, or
// until the grace after its start passed.
func TestAwaitHandler(t *testing.T) {
	signal.Ignore(unix.SIGUSR1)
	defer signal.Reset(unix.SIGUSR1)
	self := os.Getpid()
	ctx := context.Background()

	start := time.Now()
	awaitHandler(ctx, self, unix.SIGUSR1, time.Now())
	if d := time.Since(start); d > handlerGrace/2 {
		t.Errorf("held a signal the process ignores for %s", d)
	}

	sleep := exec.Command("sleep", "10")
	if err := sleep.Start(); err != nil {
		t.Skip("no sleep program")
	}
	defer func() {
		sleep.Process.Kill()
		sleep.Wait()
	}()
	started := time.Now().Add(-handlerGrace + 200*time.Millisecond)
	awaitHandler(ctx, sleep.Process.Pid, unix.SIGTERM, started)
	if time.Now().Before(started.Add(handlerGrace)) {
		t.Error("released a signal the process leaves at its default before the grace passed")
	}
}
