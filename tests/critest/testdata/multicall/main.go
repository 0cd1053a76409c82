// Command multicall provides, in critest's test images, the few programs
// that the images critest pulls upstream have and Debian's static busybox
// lacks, and the pause image's process. It is one static binary linked under several names and picks the
// program by the name it was run as.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
)

func main() {
	var code int
	switch name := filepath.Base(os.Args[0]); name {
	case "pgrep":
		code = pgrep(os.Args[1:])
	case "ipcs":
		code = ipcs()
	case "pause":
		code = pause()
	case "nonewprivs":
		// What the nonewprivs test image prints: its binary is setuid
		// root, so the effective uid tells whether no_new_privs held.
		fmt.Printf("Effective uid: %d\n", os.Geteuid())
	default:
		fmt.Fprintf(os.Stderr, "%s: unknown program\n", name)
		code = 127
	}
	os.Exit(code)
}

// pause is a pod's sandbox process, as the pause image's: it waits for
// SIGINT or SIGTERM, reaping the orphans a shared PID namespace hands it.
// Unlike a shell script's sleep, it adds no process a test would look for.
func pause() int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			return 0
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
	return 0
}

// pgrep prints the pid of each live process whose name matches the
// pattern and exits 1 when none does, as procps' pgrep does. Zombies are
// left out: a killed process whose parent (outside the container's PID
// namespace) has not reaped it yet no longer runs.
func pgrep(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: pgrep PATTERN")
		return 2
	}
	re, err := regexp.Compile(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgrep:", err)
		return 2
	}
	self := os.Getpid()
	found := false
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, c := range comms {
		b, err := os.ReadFile(c)
		if err != nil {
			continue // the process ended meanwhile
		}
		pid := filepath.Base(filepath.Dir(c))
		if pid == fmt.Sprint(self) || !re.MatchString(strings.TrimSpace(string(b))) || zombie(pid) {
			continue
		}
		fmt.Println(pid)
		found = true
	}
	if !found {
		return 1
	}
	return 0
}

// zombie tells whether process pid has exited and awaits its reaping.
func zombie(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return true // gone
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// ipcs lists the System V shared memory segments of the IPC namespace, in
// the columns of util-linux's `ipcs -m`.
func ipcs() int {
	f, err := os.Open("/proc/sysvipc/shm")
	if err != nil {
		fmt.Fprintln(os.Stderr, "ipcs:", err)
		return 1
	}
	defer f.Close()
	fmt.Println("\n------ Shared Memory Segments --------")
	fmt.Printf("%-10s %-10s %-10s %-10s %-10s %-10s\n", "key", "shmid", "owner", "perms", "bytes", "nattch")
	s := bufio.NewScanner(f)
	s.Scan() // the header line
	for s.Scan() {
		// key shmid perms size cpid lpid nattch uid ...
		fl := strings.Fields(s.Text())
		if len(fl) < 8 {
			continue
		}
		var key int64
		fmt.Sscan(fl[0], &key)
		fmt.Printf("0x%08x %-10s %-10s %-10s %-10s %-10s\n", uint32(key), fl[1], fl[7], fl[2], fl[3], fl[6])
	}
	return 0
}
