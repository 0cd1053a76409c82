// Package vport serves the agent's ttrpc connection over a virtio-serial
// port.
package vport

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Name is the name the host gives the agent's virtio-serial port
// (QEMU: -device virtserialport,name=io.scc.agent).
const Name = "io.scc.agent"

// SysClassDir lists the guest's virtio-serial ports.
const SysClassDir = "/sys/class/virtio-ports"

// pollInterval is how often Find looks again for the port and Accept for a
// connected host; short, since both are on the boot path.
const pollInterval = 20 * time.Millisecond

// Find returns the device path (/dev/vportNpM) of the port called name,
// waiting for it to appear: virtio_console probes ports asynchronously, so
// the port may show up after the agent starts. It gives up when ctx is done.
func Find(ctx context.Context, sysDir, name string) (string, error) {
	for {
		dev, err := lookup(sysDir, name)
		if err != nil {
			return "", err
		}
		if dev != "" {
			return filepath.Join("/dev", dev), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("find virtio port %q: %w", name, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// lookup returns the port directory name whose name file holds name, or ""
// if none does yet.
func lookup(sysDir, name string) (string, error) {
	entries, err := os.ReadDir(sysDir)
	if err != nil {
		if os.IsNotExist(err) {
			return "", nil // the driver is not loaded yet
		}
		return "", fmt.Errorf("list virtio ports: %w", err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err != nil {
			continue // a port without a name, or one going away
		}
		if string(bytes.TrimSpace(data)) == name {
			return e.Name(), nil
		}
	}
	return "", nil
}

// Lookup returns the device path of the port called name, or "" if the
// guest has no such port (yet).
func Lookup(sysDir, name string) (string, error) {
	dev, err := lookup(sysDir, name)
	if dev == "" || err != nil {
		return "", err
	}
	return filepath.Join("/dev", dev), nil
}
