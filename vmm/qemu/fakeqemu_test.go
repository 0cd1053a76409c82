package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sccontainers/scc/vmm"
)

// fakeQEMUEnv selects the fake QEMU behaviour when the test binary is run
// as QEMU (see TestMain).
const fakeQEMUEnv = "SCC_FAKE_QEMU"

// Fake QEMU behaviours.
const (
	fakeOK         = "ok"          // serve QMP until quit
	fakeBadArgs    = "bad-args"    // complain on stderr and exit 1 at once
	fakePoweroff   = "poweroff"    // serve QMP, then exit 0 after a moment, like a guest poweroff
	fakeIgnoreQuit = "ignore-quit" // answer quit but keep running
	fakeNoQMP      = "no-qmp"      // never open the QMP socket
	fakePorts      = "ports"       // the guest opens the vTPM's port, then later the agent's
)

// fakeShimEnv makes the test binary act as a shim that starts a fake QEMU
// and then waits to be killed (see TestNoOrphanAfterShimDies). Its value is
// a directory holding the kernel and firmware stand-ins.
const fakeShimEnv = "SCC_FAKE_SHIM"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeQEMUEnv); mode != "" {
		os.Exit(fakeQEMU(mode, os.Args[1:]))
	}
	if dir := os.Getenv(fakeShimEnv); dir != "" {
		os.Exit(fakeShim(dir))
	}
	os.Exit(m.Run())
}

// fakeShim starts a VM whose QEMU is this binary, prints QEMU's pid and
// sleeps until killed.
func fakeShim(dir string) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv(fakeQEMUEnv, fakeOK)
	v, err := Driver{Binary: self}.NewVM(vmm.Config{
		ID:       "orphan",
		StateDir: filepath.Join(dir, "state"),
		Kernel:   filepath.Join(dir, "vmlinux"),
		Firmware: filepath.Join(dir, "bios.rom"),
		Accel:    vmm.AccelTCG,
	})
	if err == nil {
		err = v.Start(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(v.Pid())
	// Keep the runtime creating and retiring OS threads (a goroutine that
	// exits while locked takes its thread with it), as other shim code may:
	// QEMU's parent-death signal is tied to the thread that forked it, so
	// that thread must not be among those retired.
	for {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(done)
		}()
		<-done
		time.Sleep(time.Millisecond)
	}
}

// fakeQEMU mimics the parts of qemu-system-x86_64 the driver relies on:
// the files it creates in the state dir, its QMP server and its exit.
func fakeQEMU(mode string, args []string) int {
	opt := func(name string) string {
		for i := 0; i+1 < len(args); i++ {
			if args[i] == name {
				return args[i+1]
			}
		}
		return ""
	}
	optField := func(name, key string) string {
		for i := 0; i+1 < len(args); i++ {
			if args[i] != name {
				continue
			}
			for _, kv := range strings.Split(args[i+1], ",") {
				if v, ok := strings.CutPrefix(kv, key+"="); ok {
					return v
				}
			}
		}
		return ""
	}
	if mode == fakeBadArgs {
		fmt.Fprintln(os.Stderr, "qemu-system-x86_64: -kernel: could not load kernel")
		return 1
	}

	console, err := os.Create(strings.TrimPrefix(opt("-serial"), "file:"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.WriteFile(opt("-pidfile"), []byte(fmt.Sprint(os.Getpid())), 0o600)
	if _, err := net.Listen("unix", optField("-chardev", "path")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintln(console, "Linux version 6.1.0 (fake)")
	if mode == fakeNoQMP {
		time.Sleep(time.Hour)
	}
	qmpPath := strings.TrimPrefix(strings.Split(opt("-qmp"), ",")[0], "unix:")
	l, err := net.Listen("unix", qmpPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if mode == fakePoweroff {
		go func() {
			time.Sleep(300 * time.Millisecond)
			fmt.Fprintln(console, "reboot: Power down")
			os.Exit(0)
		}()
	}

	var mu sync.Mutex
	status := "running"
	for {
		conn, err := l.Accept()
		if err != nil {
			return 1
		}
		go func() {
			defer conn.Close()
			w := bufio.NewWriter(conn)
			send := func(v any) {
				b, _ := json.Marshal(v)
				w.Write(append(b, '\r', '\n'))
				w.Flush()
			}
			send(map[string]any{"QMP": map[string]any{"version": map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 0}}, "capabilities": []string{}}})
			dec := json.NewDecoder(conn)
			for {
				var req struct {
					Execute string          `json:"execute"`
					ID      json.RawMessage `json:"id"`
				}
				if dec.Decode(&req) != nil {
					return
				}
				reply := func(ret any) { send(map[string]any{"return": ret, "id": req.ID}) }
				event := func(name string) {
					send(map[string]any{"event": name, "timestamp": map[string]int64{"seconds": time.Now().Unix(), "microseconds": 0}})
				}
				mu.Lock()
				switch req.Execute {
				case "qmp_capabilities":
					reply(struct{}{})
					if mode == fakePorts {
						port := func(id string) {
							send(map[string]any{"event": "VSERPORT_CHANGE", "data": map[string]any{"id": id, "open": true},
								"timestamp": map[string]int64{"seconds": time.Now().Unix(), "microseconds": 0}})
						}
						port("tpmport")
						go func() {
							time.Sleep(300 * time.Millisecond)
							mu.Lock()
							defer mu.Unlock()
							port(agentPortID)
						}()
					}
				case "query-status":
					reply(map[string]any{"status": status, "running": status == "running"})
				case "stop":
					status = "paused"
					event("STOP")
					reply(struct{}{})
				case "cont":
					status = "running"
					event("RESUME")
					reply(struct{}{})
				case "quit":
					reply(struct{}{})
					if mode != fakeIgnoreQuit {
						event("SHUTDOWN")
						os.Exit(0)
					}
				default:
					send(map[string]any{"error": map[string]string{"class": "CommandNotFound", "desc": "The command " + req.Execute + " has not been found"}, "id": req.ID})
				}
				mu.Unlock()
			}
		}()
	}
}
