package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// TestOnlineResources brings a fake sysfs's offline CPUs and memory
// blocks online.
func TestOnlineResources(t *testing.T) {
	dir := t.TempDir()
	write := func(path, content string) {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(path string) string {
		b, err := os.ReadFile(filepath.Join(dir, path))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if err := os.MkdirAll(filepath.Join(dir, "cpu", "cpu0"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("cpu/cpu1/online", "0\n")
	write("cpu/cpu2/online", "1\n")
	write("memory/block_size_bytes", "8000000\n") // 128 MiB
	write("memory/memory0/state", "online\n")
	write("memory/memory1/state", "online\n")
	write("memory/memory32/state", "offline\n")

	s := New(Options{})
	s.sysDir = dir
	resp, err := s.OnlineResources(context.Background(), &agentapi.OnlineResourcesRequest{Vcpus: 3, MemoryMib: 384})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Vcpus != 3 || resp.MemoryMib != 384 {
		t.Errorf("online: %d vcpus, %d MiB; want 3, 384", resp.Vcpus, resp.MemoryMib)
	}
	if got := read("cpu/cpu1/online"); got != "1" {
		t.Errorf("cpu1 online = %q", got)
	}
	if got := read("memory/memory32/state"); got != "online" {
		t.Errorf("memory32 state = %q", got)
	}
}
