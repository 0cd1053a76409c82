// Package forward is the guest's byte channel to the services its host
// forwards to it: the image registry and the key broker of confidential
// containers, which a guest reaches without a network of its own.
//
// The channel is one virtio-serial port (PortName) carrying a yamux
// session: the guest opens a stream per connection and names its target
// in a one-line header ("registry\n"); the host answers "ok\n" once it has
// dialled the address its configuration gives that name, or "error: ...\n",
// and then copies bytes both ways. The guest only ever names a target: the
// addresses are the host's, so a guest cannot make the host connect
// anywhere else. What crosses the channel is whatever the two ends speak
// (HTTP, TLS); the channel neither reads nor changes it.
package forward

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
)

// PortName is the name of the virtio-serial port of the channel.
const PortName = "io.scc.forward"

// Targets a guest names.
const (
	// TargetRegistry is the image registry a confidential container's
	// image is pulled from.
	TargetRegistry = "registry"
	// TargetKBS is the key broker that releases image keys.
	TargetKBS = "kbs"
)

// maxHeader bounds a stream's header line (target name or answer).
const maxHeader = 512

var targetPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// ErrRefused is a host that would not connect a stream to its target.
var ErrRefused = errors.New("forward: refused")

// ValidTarget reports whether name can name a target.
func ValidTarget(name string) bool { return targetPattern.MatchString(name) }

// sessionConfig is the yamux configuration of both ends. Keepalives are
// off: a VM paused for a snapshot, or a guest under emulation, can stay
// silent for long, and the session ends with the VM anyway.
func sessionConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.ConnectionWriteTimeout = 60 * time.Second
	c.StreamOpenTimeout = 60 * time.Second
	c.LogOutput = io.Discard
	return c
}

// readLine reads one header line without reading past it: the bytes after
// it belong to the stream's payload.
func readLine(r io.Reader) (string, error) {
	var b strings.Builder
	var c [1]byte
	for b.Len() <= maxHeader {
		if _, err := io.ReadFull(r, c[:]); err != nil {
			return "", err
		}
		if c[0] == '\n' {
			return b.String(), nil
		}
		b.WriteByte(c[0])
	}
	return "", fmt.Errorf("forward: header longer than %d bytes", maxHeader)
}
