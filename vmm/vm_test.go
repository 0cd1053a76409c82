package vmm

import (
	"errors"
	"strings"
	"testing"
)

func TestExitError(t *testing.T) {
	waitErr := errors.New("exit status 1")
	tests := []struct {
		name string
		err  *ExitError
		want []string
	}{
		{"crash", &ExitError{Err: waitErr, Log: "qemu: could not load kernel\n", Console: ""}, []string{"exit status", "vmm log: qemu: could not load kernel"}},
		{"guest poweroff", &ExitError{Console: "reboot: Power down\n"}, []string{"status 0", "console: reboot: Power down"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Error() = %q, want it to contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "console: ;") || strings.HasSuffix(msg, "console: ") {
				t.Errorf("Error() = %q mentions an empty console", msg)
			}
		})
	}
	if err := error(&ExitError{Err: waitErr}); !errors.Is(err, waitErr) {
		t.Error("ExitError does not unwrap to the wait error")
	}
}
