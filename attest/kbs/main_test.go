package kbs_test

import (
	"flag"
	"io"
	"os"
	"testing"

	"github.com/containerd/log"
)

// TestMain keeps the broker's decision log out of test output unless -v.
func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Verbose() {
		log.L.Logger.SetOutput(io.Discard)
	}
	os.Exit(m.Run())
}
