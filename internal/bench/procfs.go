package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// proc is one process as procfs shows it.
type proc struct {
	pid, ppid int
	name      string // comm
	argv      []string
}

// readProcs lists the processes of the procfs mounted at root. Processes
// that exit while being read are left out.
func readProcs(root string) (map[int]proc, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	procs := make(map[int]proc)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(root, e.Name(), "stat"))
		if err != nil {
			continue
		}
		p, err := parseStat(string(stat))
		if err != nil {
			return nil, fmt.Errorf("process %d: %w", pid, err)
		}
		cmdline, err := os.ReadFile(filepath.Join(root, e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		p.argv = strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		procs[pid] = p
	}
	return procs, nil
}

// parseStat reads pid, comm and ppid from /proc/PID/stat. comm is in
// parentheses and may itself hold spaces and parentheses, so the fields
// after it are found from the last ')'.
func parseStat(stat string) (proc, error) {
	open := strings.IndexByte(stat, '(')
	end := strings.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return proc{}, fmt.Errorf("parse stat %q: no command name", stat)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(stat[:open]))
	if err != nil {
		return proc{}, fmt.Errorf("parse stat pid: %w", err)
	}
	rest := strings.Fields(stat[end+1:])
	if len(rest) < 2 {
		return proc{}, fmt.Errorf("parse stat %q: too few fields", stat)
	}
	ppid, err := strconv.Atoi(rest[1])
	if err != nil {
		return proc{}, fmt.Errorf("parse stat ppid: %w", err)
	}
	return proc{pid: pid, ppid: ppid, name: stat[open+1 : end]}, nil
}

// findShim returns the pid of the shim serving sandbox id for the
// containerd at address: shims v2 are started with "-id ID -address
// ADDR", which tells them apart from another containerd's.
func findShim(procs map[int]proc, address, id string) (int, error) {
	var found []int
	for pid, p := range procs {
		if flagValue(p.argv, "-id") == id && flagValue(p.argv, "-address") == address {
			found = append(found, pid)
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("no shim process for %s", id)
	case 1:
		return found[0], nil
	}
	sort.Ints(found)
	return 0, fmt.Errorf("%d shim processes for %s: %v", len(found), id, found)
}

func flagValue(argv []string, name string) string {
	for i := 1; i+1 < len(argv); i++ {
		if argv[i] == name {
			return argv[i+1]
		}
	}
	return ""
}

// descendants returns root and every process below it, root first.
func descendants(procs map[int]proc, root int) []int {
	children := make(map[int][]int)
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		kids := children[out[i]]
		sort.Ints(kids)
		out = append(out, kids...)
	}
	return out
}

// sandboxMemory measures the processes of sandbox id: its shim and the
// shim's descendants.
func sandboxMemory(root, address, id string) (SandboxMemory, error) {
	procs, err := readProcs(root)
	if err != nil {
		return SandboxMemory{}, err
	}
	shim, err := findShim(procs, address, id)
	if err != nil {
		return SandboxMemory{}, err
	}
	sb := SandboxMemory{ID: id}
	for _, pid := range descendants(procs, shim) {
		r, err := readRollup(filepath.Join(root, strconv.Itoa(pid), "smaps_rollup"))
		if errors.Is(err, fs.ErrNotExist) && pid != shim {
			continue // exited meanwhile
		}
		if err != nil {
			return SandboxMemory{}, fmt.Errorf("sandbox %s: %w", id, err)
		}
		sb.Processes = append(sb.Processes, ProcessMemory{PID: pid, Name: procs[pid].name, Shim: pid == shim, Rollup: r})
	}
	return sb, nil
}

func readRollup(path string) (Rollup, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Rollup{}, fmt.Errorf("read smaps_rollup: %w", err)
	}
	r, err := parseRollup(bytes.NewReader(b))
	if err != nil {
		return Rollup{}, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// parseRollup reads /proc/PID/smaps_rollup. A kernel thread's is empty
// apart from the header, which is no error; a user process's always has
// a Pss line.
func parseRollup(r io.Reader) (Rollup, error) {
	var out Rollup
	fields := map[string]*uint64{
		"Rss":           &out.RSS,
		"Pss":           &out.PSS,
		"Private_Clean": &out.PrivateClean,
		"Private_Dirty": &out.PrivateDirty,
		"Swap":          &out.Swap,
	}
	sc := bufio.NewScanner(r)
	lines, sawPSS := 0, false
	for sc.Scan() {
		lines++
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue // the header: "00400000-ffffffffff600000 ---p ... [rollup]"
		}
		p, known := fields[k]
		if !known {
			continue
		}
		n, err := parseKB(v)
		if err != nil {
			return Rollup{}, fmt.Errorf("parse smaps_rollup %s: %w", k, err)
		}
		*p = n
		sawPSS = sawPSS || k == "Pss"
	}
	if err := sc.Err(); err != nil {
		return Rollup{}, fmt.Errorf("read smaps_rollup: %w", err)
	}
	if lines > 1 && !sawPSS {
		return Rollup{}, errors.New("parse smaps_rollup: no Pss line")
	}
	return out, nil
}
