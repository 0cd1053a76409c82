package clh

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeCLHEnv makes the test binary act as cloud-hypervisor (or, when run
// with --socket-path, as virtiofsd); its value selects a behaviour.
const fakeCLHEnv = "SCC_FAKE_CLH"

const (
	fakeOK         = "ok"           // serve the API until vmm.shutdown
	fakeExitOnBoot = "exit-on-boot" // fail vm.boot by exiting with a complaint
	fakeNoAPI      = "no-api"       // never open the API socket
)

// requestLogName is where the fake records each request it accepted, one
// JSON object per line, next to its API socket.
const requestLogName = "requests.jsonl"

type loggedRequest struct {
	Method   string          `json:"method"`
	Endpoint string          `json:"endpoint"`
	Body     json.RawMessage `json:"body,omitempty"`
}

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeCLHEnv); mode != "" {
		os.Exit(fakeMain(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fakeMain(mode string, args []string) int {
	for _, a := range args {
		if sock, ok := strings.CutPrefix(a, "--socket-path="); ok {
			return fakeVirtiofsd(sock)
		}
	}
	if len(args) != 2 || args[0] != "--api-socket" || !strings.HasPrefix(args[1], "path=") {
		fmt.Fprintf(os.Stderr, "fake cloud-hypervisor: unexpected arguments %q\n", args)
		return 2
	}
	if mode == fakeNoAPI {
		time.Sleep(time.Hour)
	}
	return fakeCLH(mode, strings.TrimPrefix(args[1], "path="))
}

func fakeVirtiofsd(sock string) int {
	if _, err := net.Listen("unix", sock); err != nil {
		fmt.Fprintln(os.Stderr, "fake virtiofsd:", err)
		return 1
	}
	time.Sleep(time.Hour)
	return 0
}

// fakeCLH serves the subset of the API the driver uses, validating every
// request, and its own answers, against the API description.
func fakeCLH(mode, apiSock string) int {
	spec, err := loadSpec(true)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake cloud-hypervisor:", err)
		return 1
	}
	l, err := net.Listen("unix", apiSock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake cloud-hypervisor:", err)
		return 1
	}
	reqLog, err := os.OpenFile(filepath.Join(filepath.Dir(apiSock), requestLogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake cloud-hypervisor:", err)
		return 1
	}

	var mu sync.Mutex
	state := ""       // "" until vm.create
	var config []byte // the vm.create body
	var console net.Listener

	// createDevices does what cloud-hypervisor does for the devices the
	// driver configures: the serial log file and the console socket.
	createDevices := func(body []byte) error {
		var vc VMConfig
		if err := json.Unmarshal(body, &vc); err != nil {
			return err
		}
		f, err := os.Create(vc.Serial.File)
		if err != nil {
			return err
		}
		fmt.Fprintln(f, "Linux version 6.1.0 (fake)")
		f.Close()
		console, err = net.Listen("unix", vc.Console.Socket)
		return err
	}

	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := readBody(r)
		in, err := spec.validateRequest(r)
		if err != nil {
			http.Error(w, "request does not match the API description: "+err.Error(), http.StatusBadRequest)
			return
		}
		endpoint := strings.TrimPrefix(r.URL.Path, "/api/v1/")
		line, _ := json.Marshal(loggedRequest{Method: r.Method, Endpoint: endpoint, Body: json.RawMessage(nonEmpty(body))})
		reqLog.Write(append(line, '\n'))

		reply := func(status int, v any) {
			var b []byte
			if v != nil {
				b, _ = json.Marshal(v)
			}
			if err := spec.validateResponse(in, status, b); err != nil {
				http.Error(w, "fake answer does not match the API description: "+err.Error(), http.StatusInternalServerError)
				return
			}
			if b != nil {
				w.Header().Set("Content-Type", "application/json")
			}
			w.WriteHeader(status)
			w.Write(b)
		}
		// transition answers 204 when the VM is in from, else 405 (404
		// before vm.create), as cloud-hypervisor does.
		transition := func(to string, from ...string) {
			if state == "" {
				reply(http.StatusNotFound, nil)
				return
			}
			for _, f := range from {
				if state == f {
					state = to
					reply(http.StatusNoContent, nil)
					return
				}
			}
			http.Error(w, "VM is "+state, http.StatusMethodNotAllowed)
		}

		mu.Lock()
		defer mu.Unlock()
		switch endpoint {
		case "vmm.ping":
			reply(http.StatusOK, PingResponse{Version: "v48.0-fake", Pid: int64(os.Getpid())})
		case "vmm.shutdown":
			reply(http.StatusNoContent, nil)
			go func() { time.Sleep(10 * time.Millisecond); os.Exit(0) }()
		case "vm.create":
			if state != "" {
				http.Error(w, "VM already created", http.StatusInternalServerError)
				return
			}
			if err := createDevices(body); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			state, config = StateCreated, body
			reply(http.StatusNoContent, nil)
		case "vm.boot":
			if mode == fakeExitOnBoot {
				fmt.Fprintln(os.Stderr, "cloud-hypervisor: Error booting VM: KVM_CREATE_VM: Operation not permitted")
				os.Exit(1)
			}
			transition(StateRunning, StateCreated)
		case "vm.pause":
			transition(StatePaused, StateRunning)
		case "vm.resume":
			transition(StateRunning, StatePaused)
		case "vm.shutdown":
			transition(StateShutdown, StateRunning, StatePaused)
		case "vm.info":
			if state == "" {
				reply(http.StatusNotFound, nil)
				return
			}
			reply(http.StatusOK, VMInfo{Config: config, State: state})
		case "vm.snapshot":
			if state != StatePaused {
				http.Error(w, "VM is not paused", http.StatusInternalServerError)
				return
			}
			var sc snapshotConfig
			json.Unmarshal(body, &sc)
			dir := strings.TrimPrefix(sc.DestinationURL, "file://")
			if err := os.WriteFile(filepath.Join(dir, snapshotConfigName), config, 0o600); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			os.WriteFile(filepath.Join(dir, "state.json"), []byte(`{"fake":true}`), 0o600)
			reply(http.StatusNoContent, nil)
		case "vm.restore":
			if state != "" {
				reply(http.StatusNotFound, nil) // "already created"
				return
			}
			var rc restoreConfig
			json.Unmarshal(body, &rc)
			b, err := os.ReadFile(filepath.Join(strings.TrimPrefix(rc.SourceURL, "file://"), snapshotConfigName))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if err := createDevices(b); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			state, config = StatePaused, b
			reply(http.StatusNoContent, nil)
		default:
			http.Error(w, "not implemented by the fake", http.StatusNotImplemented)
		}
	})
	http.Serve(l, h)
	// Referenced here so that the agent socket's listener stays open
	// (and is not collected) while the fake serves.
	_ = console
	return 1
}

func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
