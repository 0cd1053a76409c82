package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const rollupQEMU = `55d1c0a00000-7ffc8e9f1000 ---p 00000000 00:00 0                          [rollup]
Rss:              301228 kB
Pss:              290100 kB
Pss_Anon:         280000 kB
Pss_File:          10100 kB
Pss_Shmem:             0 kB
Shared_Clean:      12000 kB
Shared_Dirty:          0 kB
Private_Clean:      2000 kB
Private_Dirty:    287228 kB
Referenced:       301228 kB
Anonymous:        287228 kB
Swap:                 12 kB
SwapPss:              12 kB
Locked:                0 kB
`

func TestParseRollup(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       string
		expected Rollup
		fails    bool
	}{
		{"qemu", rollupQEMU, Rollup{RSS: 301228 << 10, PSS: 290100 << 10, PrivateClean: 2000 << 10, PrivateDirty: 287228 << 10, Swap: 12 << 10}, false},
		{"kernel thread", "", Rollup{}, false},
		{"no Pss", "0-1 ---p 0 00:00 0 [rollup]\nRss: 4 kB\n", Rollup{}, true},
		{"bad number", "0-1 ---p 0 00:00 0 [rollup]\nPss: many kB\n", Rollup{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRollup(strings.NewReader(tc.in))
			if tc.fails {
				if err == nil {
					t.Fatalf("parseRollup accepted %q", tc.in)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.expected {
				t.Errorf("parseRollup = %+v, want %+v", got, tc.expected)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	p, err := parseStat("4242 (qemu (x) y) S 17 4242 4242 0 -1 4194560 ...")
	if err != nil {
		t.Fatal(err)
	}
	if p.pid != 4242 || p.ppid != 17 || p.name != "qemu (x) y" {
		t.Errorf("parseStat = %+v", p)
	}
	if _, err := parseStat("4242 qemu S 17"); err == nil {
		t.Error("parseStat accepted a line without a command name")
	}
}

// fakeProc writes a procfs tree with one process per entry.
type fakeProcess struct {
	pid, ppid int
	name      string
	argv      []string
	pssKB     int // 0: no smaps_rollup
}

func writeFakeProc(t *testing.T, ps []fakeProcess) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range ps {
		dir := filepath.Join(root, strconv.Itoa(p.pid))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := strconv.Itoa(p.pid) + " (" + p.name + ") S " + strconv.Itoa(p.ppid) + " 1 1 0 -1"
		files := map[string]string{
			"stat":    stat,
			"cmdline": strings.Join(p.argv, "\x00") + "\x00",
		}
		if p.pssKB > 0 {
			files["smaps_rollup"] = "0-1 ---p 0 00:00 0 [rollup]\nRss: " + strconv.Itoa(2*p.pssKB) + " kB\nPss: " + strconv.Itoa(p.pssKB) + " kB\n"
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// procfs has non-process entries too.
	os.WriteFile(filepath.Join(root, "meminfo"), []byte("MemTotal: 1 kB\n"), 0o644)
	return root
}

func TestSandboxMemory(t *testing.T) {
	const addr = "/tmp/b/c/containerd.sock"
	shimArgv := func(id, address string) []string {
		return []string{"containerd-shim-scc-v2", "-namespace", "scc", "-id", id, "-address", address}
	}
	root := writeFakeProc(t, []fakeProcess{
		{pid: 1, ppid: 0, name: "init", argv: []string{"/sbin/init"}, pssKB: 100},
		{pid: 10, ppid: 1, name: "containerd", argv: []string{"containerd", "--config", "x"}, pssKB: 5000},
		{pid: 20, ppid: 1, name: "containerd-shim", argv: shimArgv("idle-0", addr), pssKB: 7000},
		{pid: 21, ppid: 20, name: "qemu-system-x86", argv: []string{"qemu-system-x86_64"}, pssKB: 60000},
		{pid: 22, ppid: 21, name: "cat", argv: []string{"cat"}, pssKB: 100},
		// Another sandbox, and the same id on another containerd.
		{pid: 30, ppid: 1, name: "containerd-shim", argv: shimArgv("idle-1", addr), pssKB: 7000},
		{pid: 31, ppid: 30, name: "qemu-system-x86", argv: []string{"qemu-system-x86_64"}, pssKB: 61000},
		{pid: 40, ppid: 1, name: "containerd-shim", argv: shimArgv("idle-0", "/run/containerd/containerd.sock"), pssKB: 9000},
		{pid: 41, ppid: 40, name: "qemu-system-x86", argv: []string{"qemu-system-x86_64"}, pssKB: 99000},
	})
	sb, err := sandboxMemory(root, addr, "idle-0")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range sb.Processes {
		pids = append(pids, p.PID)
	}
	if want := []int{20, 21, 22}; !equalInts(pids, want) {
		t.Fatalf("processes %v, want %v", pids, want)
	}
	if got := sb.Total().PSS; got != (7000+60000+100)<<10 {
		t.Errorf("PSS %d, want %d", got, (7000+60000+100)<<10)
	}
	if got := sb.ShimPSS(); got != 7000<<10 {
		t.Errorf("shim PSS %d, want %d", got, 7000<<10)
	}
	if !sb.Processes[0].Shim || sb.Processes[1].Shim || sb.Processes[1].Name != "qemu-system-x86" {
		t.Errorf("roles and names wrong: %+v", sb.Processes)
	}

	if _, err := sandboxMemory(root, addr, "idle-9"); err == nil {
		t.Error("found a shim for a sandbox that has none")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
