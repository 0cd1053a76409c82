package vmm

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// State is where a VM is in its lifecycle (see the package documentation):
// created -> running <-> paused -> stopped.
type State int

// The VM states every driver goes through.
const (
	StateCreated State = iota
	StateRunning
	StatePaused
	StateStopped
)

func (s State) String() string {
	switch s {
	case StateCreated:
		return "created"
	case StateRunning:
		return "running"
	case StatePaused:
		return "paused"
	case StateStopped:
		return "stopped"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Tail returns up to the last n bytes of the file at path, starting at a
// line boundary when it had to cut; "" when the file cannot be read. Drivers
// use it for the log tails an ExitError carries.
func Tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-n, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, n))
	if err != nil {
		return ""
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
