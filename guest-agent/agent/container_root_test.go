package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/guest-agent/agent"
	"github.com/sccontainers/scc/guest-agent/reaper"
)

// TestMain lets this test binary serve as libcontainer's container init,
// which libcontainer starts by re-executing the current binary as
// "<binary> init".
//
// Like the agent's main, it keeps the main thread to itself: libcontainer
// joins containers' mount namespaces on locked threads that Go discards
// afterwards, except the main thread, which it can only park. Parked in a
// container's namespace, it would change what /proc/self shows and pin
// that namespace.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
	runtime.LockOSThread()
	os.Exit(m.Run())
}

func requiresRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create containers")
	}
}

// busyboxRootfs makes a minimal rootfs with the host's static busybox.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	const busybox = "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		t.Skipf("needs a static %s (Debian package busybox-static): %v", busybox, err)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "echo", "cat", "sleep"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func process(terminal bool, args ...string) *specs.Process {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_NET_BIND_SERVICE"}
	return &specs.Process{
		Terminal:     terminal,
		Args:         args,
		Env:          []string{"PATH=/bin", "TERM=xterm"},
		Cwd:          "/",
		Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
		Rlimits:      []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
	}
}

func minimalSpec(p *specs.Process) *specs.Spec {
	return &specs.Spec{
		Version:  specs.Version,
		Process:  p,
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "scc-test",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/host/path/that/the/agent/replaces",
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
			},
			MaskedPaths:   []string{"/proc/kcore"},
			ReadonlyPaths: []string{"/proc/sys"},
		},
	}
}

// harness serves a Service over ttrpc on a unix socket, so requests and
// errors cross the same boundary as in the guest.
type harness struct {
	t            *testing.T
	client       agentapi.AgentService
	rootfs       string
	rootfsDir    string // Options.RootfsDir
	cgroupParent string
	created      *[]string // ids of the containers created, shared by with
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	requiresRoot(t)
	rootfs := busyboxRootfs(t)

	r := reaper.New()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go r.Run(ctx)

	parent := fmt.Sprintf("/scc-test-%d", os.Getpid())
	t.Cleanup(func() { removeCgroupParent(parent) })
	rootfsDir := filepath.Join(t.TempDir(), "mounts")
	svc := agent.New(agent.Options{
		StateDir:     filepath.Join(t.TempDir(), "state"),
		CgroupParent: parent,
		RootfsDir:    rootfsDir,
		Reaper:       r,
	})
	srv, err := agent.NewServer(svc)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ctx, l)
	t.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	t.Cleanup(func() { client.Close() })
	h := &harness{t: t, client: agentapi.NewAgentClient(client), rootfs: rootfs, rootfsDir: rootfsDir, cgroupParent: parent, created: new([]string)}
	t.Cleanup(h.removeAll)
	return h
}

// removeAll kills and deletes the containers a failed test left.
func (h *harness) removeAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range *h.created {
		// Errors are expected: most containers were deleted by the test.
		h.client.SignalProcess(ctx, &agentapi.SignalProcessRequest{ContainerId: id, Signal: uint32(unix.SIGKILL), All: true})
		h.client.WaitProcess(ctx, &agentapi.WaitProcessRequest{ContainerId: id})
		h.client.DeleteContainer(ctx, &agentapi.ContainerRequest{ContainerId: id})
	}
}

// cgroupDirs lists where the container's cgroup lives on this host.
func (h *harness) cgroupDirs(id string) []string {
	if cgroups.IsCgroup2UnifiedMode() {
		return []string{filepath.Join("/sys/fs/cgroup", h.cgroupParent, id)}
	}
	var dirs []string
	for _, c := range []string{"memory", "pids", "cpu", "freezer", "devices"} {
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", c, h.cgroupParent, id))
	}
	return dirs
}

func removeCgroupParent(parent string) {
	matches, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	matches = append(matches, filepath.Join("/sys/fs/cgroup", parent))
	for _, m := range matches {
		os.Remove(m)
	}
}

// with returns h reporting to t, for use in subtest t.
func (h *harness) with(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	h.t.Cleanup(cancel)
	return ctx
}

func (h *harness) create(id string, spec *specs.Spec, stdio *agentapi.StdioConfig) {
	h.t.Helper()
	h.createOn(id, spec, stdio, &agentapi.Mount{Source: h.rootfs})
}

func (h *harness) createOn(id string, spec *specs.Spec, stdio *agentapi.StdioConfig, rootfs *agentapi.Mount) {
	h.t.Helper()
	raw, err := json.Marshal(spec)
	if err != nil {
		h.t.Fatal(err)
	}
	_, err = h.client.CreateContainer(h.ctx(), &agentapi.CreateContainerRequest{
		ContainerId: id,
		Spec:        raw,
		Rootfs:      rootfs,
		Stdio:       stdio,
	})
	if err != nil {
		h.t.Fatalf("CreateContainer %s: %v", id, err)
	}
	*h.created = append(*h.created, id)
}

func (h *harness) exec(id, execID string, p *specs.Process, stdio *agentapi.StdioConfig) uint32 {
	h.t.Helper()
	raw, err := json.Marshal(p)
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := h.client.ExecProcess(h.ctx(), &agentapi.ExecProcessRequest{ContainerId: id, ExecId: execID, Process: raw, Stdio: stdio})
	if err != nil {
		h.t.Fatalf("ExecProcess %s/%s: %v", id, execID, err)
	}
	return resp.GetPid()
}

// read reads a stream to eof, as the host does before it reports an exit.
func (h *harness) read(id, execID string, stderr bool) string {
	h.t.Helper()
	var out []byte
	for {
		req := &agentapi.ReadOutputRequest{ContainerId: id, ExecId: execID, Len: 4}
		var (
			resp *agentapi.ReadOutputResponse
			err  error
		)
		if stderr {
			resp, err = h.client.ReadStderr(h.ctx(), req)
		} else {
			resp, err = h.client.ReadStdout(h.ctx(), req)
		}
		if err != nil {
			h.t.Fatalf("read %s/%s: %v", id, execID, err)
		}
		if len(resp.GetData()) > 4 {
			h.t.Fatalf("read returned %d bytes, asked for 4", len(resp.GetData()))
		}
		if resp.GetEof() {
			return string(out)
		}
		out = append(out, resp.GetData()...)
	}
}

func (h *harness) wait(id, execID string) uint32 {
	h.t.Helper()
	resp, err := h.client.WaitProcess(h.ctx(), &agentapi.WaitProcessRequest{ContainerId: id, ExecId: execID})
	if err != nil {
		h.t.Fatalf("wait %s/%s: %v", id, execID, err)
	}
	if resp.GetExitedAt().AsTime().IsZero() {
		h.t.Fatalf("wait %s/%s: no exit time", id, execID)
	}
	return resp.GetExitStatus()
}

func (h *harness) pids(id string) []uint32 {
	h.t.Helper()
	resp, err := h.client.ListPids(h.ctx(), &agentapi.ContainerRequest{ContainerId: id})
	if err != nil {
		h.t.Fatalf("ListPids %s: %v", id, err)
	}
	return resp.GetPids()
}

func (h *harness) deleteContainer(id string) {
	h.t.Helper()
	if _, err := h.client.DeleteContainer(h.ctx(), &agentapi.ContainerRequest{ContainerId: id}); err != nil {
		h.t.Fatalf("DeleteContainer %s: %v", id, err)
	}
	for _, d := range h.cgroupDirs(id) {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			h.t.Errorf("cgroup %s left after delete (%v)", d, err)
		}
	}
}

// native converts an error from the ttrpc client back to errdefs, as the
// host shim does.
func native(err error) error { return errgrpc.ToNative(err) }

var allStdio = &agentapi.StdioConfig{Stdin: true, Stdout: true, Stderr: true}

func TestContainerLifecycleAsRoot(t *testing.T) {
	h := newHarness(t)

	t.Run("ping", func(t *testing.T) {
		h := h.with(t)
		resp, err := h.client.Ping(h.ctx(), &agentapi.PingRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var uts unix.Utsname
		if err := unix.Uname(&uts); err != nil {
			t.Fatal(err)
		}
		if resp.GetAgentVersion() != agent.Version || resp.GetKernelRelease() != unix.ByteSliceToString(uts.Release[:]) {
			t.Fatalf("Ping = %v", resp)
		}
	})

	t.Run("run to exit", func(t *testing.T) {
		h := h.with(t)
		h.create("c1", minimalSpec(process(false, "sh", "-c", "echo out; echo err >&2; exit 3")), &agentapi.StdioConfig{Stdout: true, Stderr: true})

		// Created: init is forked but waits; the user program has not run.
		if pids := h.pids("c1"); len(pids) != 1 {
			t.Fatalf("created container has pids %v, want its init only", pids)
		}
		_, err := h.client.CreateContainer(h.ctx(), &agentapi.CreateContainerRequest{
			ContainerId: "c1", Spec: []byte(`{"process":{"args":["sh"],"cwd":"/"}}`), Rootfs: &agentapi.Mount{Source: h.rootfs},
		})
		if !errdefs.IsAlreadyExists(native(err)) {
			t.Fatalf("second create = %v, want already exists", err)
		}
		if _, err := h.client.DeleteProcess(h.ctx(), &agentapi.ProcessRequest{ContainerId: "c1", ExecId: "nope"}); !errdefs.IsNotFound(native(err)) {
			t.Fatalf("DeleteProcess of unknown exec = %v, want not found", err)
		}

		start, err := h.client.StartContainer(h.ctx(), &agentapi.StartContainerRequest{ContainerId: "c1"})
		if err != nil {
			t.Fatal(err)
		}
		if start.GetPid() == 0 {
			t.Fatal("StartContainer returned pid 0")
		}
		if got := h.read("c1", "", false); got != "out\n" {
			t.Errorf("stdout = %q", got)
		}
		if got := h.read("c1", "", true); got != "err\n" {
			t.Errorf("stderr = %q", got)
		}
		if code := h.wait("c1", ""); code != 3 {
			t.Errorf("exit status = %d, want 3", code)
		}
		if _, err := h.client.StartContainer(h.ctx(), &agentapi.StartContainerRequest{ContainerId: "c1"}); !errdefs.IsFailedPrecondition(native(err)) {
			t.Errorf("start of a stopped container = %v, want failed precondition", err)
		}
		h.deleteContainer("c1")
		if _, err := h.client.DeleteContainer(h.ctx(), &agentapi.ContainerRequest{ContainerId: "c1"}); !errdefs.IsNotFound(native(err)) {
			t.Errorf("second delete = %v, want not found", err)
		}
	})

	t.Run("exec signal pause stats", func(t *testing.T) {
		h := h.with(t)
		h.create("c2", minimalSpec(process(false, "sh", "-c", "cat; echo bye")), allStdio)
		if _, err := h.client.StartContainer(h.ctx(), &agentapi.StartContainerRequest{ContainerId: "c2"}); err != nil {
			t.Fatal(err)
		}

		h.exec("c2", "e1", process(false, "echo", "exec-out"), &agentapi.StdioConfig{Stdout: true})
		if got := h.read("c2", "e1", false); got != "exec-out\n" {
			t.Errorf("exec stdout = %q", got)
		}
		if code := h.wait("c2", "e1"); code != 0 {
			t.Errorf("exec exit status = %d", code)
		}

		sleepPid := h.exec("c2", "e2", process(false, "sleep", "100"), nil)
		raw, _ := json.Marshal(process(false, "sh", "-c", "exit 0"))
		_, err := h.client.ExecProcess(h.ctx(), &agentapi.ExecProcessRequest{ContainerId: "c2", ExecId: "e2", Process: raw})
		if !errdefs.IsAlreadyExists(native(err)) {
			t.Errorf("exec with a taken id = %v, want already exists", err)
		}
		if _, err := h.client.DeleteProcess(h.ctx(), &agentapi.ProcessRequest{ContainerId: "c2", ExecId: "e2"}); !errdefs.IsFailedPrecondition(native(err)) {
			t.Errorf("delete of a running exec = %v, want failed precondition", err)
		}
		// init sh, the cat it runs, and the exec'd sleep.
		if pids := h.pids("c2"); !slices.Contains(pids, sleepPid) || len(pids) != 3 {
			t.Errorf("pids = %v, want 3 with %d", pids, sleepPid)
		}

		// Pause: the frozen cat does not echo until resumed.
		if _, err := h.client.PauseContainer(h.ctx(), &agentapi.ContainerRequest{ContainerId: "c2"}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.client.PauseContainer(h.ctx(), &agentapi.ContainerRequest{ContainerId: "c2"}); !errdefs.IsFailedPrecondition(native(err)) {
			t.Errorf("pause of a paused container = %v, want failed precondition", err)
		}
		raw, _ = json.Marshal(process(false, "sh", "-c", "exit 0"))
		if _, err := h.client.ExecProcess(h.ctx(), &agentapi.ExecProcessRequest{ContainerId: "c2", ExecId: "e3", Process: raw}); !errdefs.IsFailedPrecondition(native(err)) {
			t.Errorf("exec in a paused container = %v, want failed precondition", err)
		}
		if _, err := h.client.WriteStdin(h.ctx(), &agentapi.WriteStdinRequest{ContainerId: "c2", Data: []byte("hello\n")}); err != nil {
			t.Fatal(err)
		}
		const readTimeout = 300 * time.Millisecond
		short, cancel := context.WithTimeout(context.Background(), readTimeout)
		resp, err := h.client.ReadStdout(short, &agentapi.ReadOutputRequest{ContainerId: "c2", Len: 100})
		cancel()
		if err == nil {
			t.Fatalf("paused container produced output %q", resp.GetData())
		}
		// ttrpc passes the deadline on but not the cancellation: let the
		// agent's side of that read expire too, or it could take the
		// output that resuming releases.
		time.Sleep(readTimeout)
		if _, err := h.client.ResumeContainer(h.ctx(), &agentapi.ContainerRequest{ContainerId: "c2"}); err != nil {
			t.Fatal(err)
		}
		resp, err = h.client.ReadStdout(h.ctx(), &agentapi.ReadOutputRequest{ContainerId: "c2", Len: 100})
		if err != nil || string(resp.GetData()) != "hello\n" {
			t.Fatalf("stdout after resume = %q, %v", resp.GetData(), err)
		}

		stats, err := h.client.StatsContainer(h.ctx(), &agentapi.ContainerRequest{ContainerId: "c2"})
		if err != nil {
			t.Fatal(err)
		}
		if stats.GetCpuUsageNs() == 0 || stats.GetMemoryUsageBytes() == 0 || stats.GetPidsCurrent() < 2 {
			t.Errorf("stats = %v, want cpu, memory and at least 2 pids", stats)
		}
		res, _ := json.Marshal(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(50))}})
		if _, err := h.client.UpdateContainer(h.ctx(), &agentapi.UpdateContainerRequest{ContainerId: "c2", Resources: res}); err != nil {
			t.Fatal(err)
		}
		stats, err = h.client.StatsContainer(h.ctx(), &agentapi.ContainerRequest{ContainerId: "c2"})
		if err != nil || stats.GetPidsLimit() != 50 {
			t.Errorf("pids limit after update = %d, %v; want 50", stats.GetPidsLimit(), err)
		}

		if _, err := h.client.SignalProcess(h.ctx(), &agentapi.SignalProcessRequest{ContainerId: "c2", ExecId: "e2", Signal: uint32(unix.SIGTERM)}); err != nil {
			t.Fatal(err)
		}
		if code := h.wait("c2", "e2"); code != 128+uint32(unix.SIGTERM) {
			t.Errorf("sleep exit status = %d, want %d", code, 128+unix.SIGTERM)
		}
		if _, err := h.client.SignalProcess(h.ctx(), &agentapi.SignalProcessRequest{ContainerId: "c2", ExecId: "e2", Signal: uint32(unix.SIGTERM)}); !errdefs.IsNotFound(native(err)) {
			t.Errorf("signal to an exited exec = %v, want not found", err)
		}
		if _, err := h.client.DeleteProcess(h.ctx(), &agentapi.ProcessRequest{ContainerId: "c2", ExecId: "e2"}); err != nil {
			t.Fatal(err)
		}
		// After delete, the exec id is free again.
		h.exec("c2", "e2", process(false, "sh", "-c", "exit 0"), nil)
		if code := h.wait("c2", "e2"); code != 0 {
			t.Errorf("reused exec id exit status = %d", code)
		}

		if _, err := h.client.DeleteContainer(h.ctx(), &agentapi.ContainerRequest{ContainerId: "c2"}); !errdefs.IsFailedPrecondition(native(err)) {
			t.Fatalf("delete of a running container = %v, want failed precondition", err)
		}
		if _, err := h.client.CloseStdin(h.ctx(), &agentapi.ProcessRequest{ContainerId: "c2"}); err != nil {
			t.Fatal(err)
		}
		if got := h.read("c2", "", false); got != "bye\n" {
			t.Errorf("stdout after stdin closed = %q", got)
		}
		if code := h.wait("c2", ""); code != 0 {
			t.Errorf("init exit status = %d", code)
		}
		h.deleteContainer("c2")
	})

	t.Run("terminal", func(t *testing.T) {
		h := h.with(t)
		h.create("c3", minimalSpec(process(true, "sh", "-c", "test -t 0 && test -t 1 && echo tty; read x; echo got-$x")),
			&agentapi.StdioConfig{Terminal: true, Stdin: true, Stdout: true})
		if _, err := h.client.ResizePty(h.ctx(), &agentapi.ResizePtyRequest{ContainerId: "c3", Width: 100, Height: 30}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.client.StartContainer(h.ctx(), &agentapi.StartContainerRequest{ContainerId: "c3"}); err != nil {
			t.Fatal(err)
		}
		h.exec("c3", "tty", process(true, "sh", "-c", "test -t 1 && echo exec-tty"), &agentapi.StdioConfig{Terminal: true, Stdout: true})
		if got := h.read("c3", "tty", false); got != "exec-tty\r\n" {
			t.Errorf("exec terminal output = %q", got)
		}
		if code := h.wait("c3", "tty"); code != 0 {
			t.Errorf("exec exit status = %d", code)
		}
		if _, err := h.client.WriteStdin(h.ctx(), &agentapi.WriteStdinRequest{ContainerId: "c3", Data: []byte("x\n")}); err != nil {
			t.Fatal(err)
		}
		out := h.read("c3", "", false)
		// The terminal echoes input and turns \n into \r\n.
		if !strings.Contains(out, "tty\r\n") || !strings.Contains(out, "got-x\r\n") {
			t.Errorf("terminal output = %q", out)
		}
		if got := h.read("c3", "", true); got != "" {
			t.Errorf("stderr of a terminal process = %q, want none", got)
		}
		if code := h.wait("c3", ""); code != 0 {
			t.Errorf("exit status = %d", code)
		}
		h.deleteContainer("c3")
	})

	t.Run("signal all", func(t *testing.T) {
		h := h.with(t)
		h.create("c4", minimalSpec(process(false, "sh", "-c", "sleep 100 & sleep 100 & wait")), nil)
		if _, err := h.client.StartContainer(h.ctx(), &agentapi.StartContainerRequest{ContainerId: "c4"}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(h.pids("c4")) < 3 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := len(h.pids("c4")); n != 3 {
			t.Fatalf("container has %d processes, want 3", n)
		}
		if _, err := h.client.SignalProcess(h.ctx(), &agentapi.SignalProcessRequest{ContainerId: "c4", Signal: uint32(unix.SIGKILL), All: true}); err != nil {
			t.Fatal(err)
		}
		if code := h.wait("c4", ""); code != 128+uint32(unix.SIGKILL) {
			t.Errorf("init exit status = %d, want %d", code, 128+unix.SIGKILL)
		}
		h.deleteContainer("c4")
	})

	t.Run("delete never started", func(t *testing.T) {
		h := h.with(t)
		h.create("c5", minimalSpec(process(false, "sh", "-c", "exit 0")), nil)
		h.deleteContainer("c5")
		if _, err := h.client.WaitProcess(h.ctx(), &agentapi.WaitProcessRequest{ContainerId: "c5"}); !errdefs.IsNotFound(native(err)) {
			t.Errorf("wait after delete = %v, want not found", err)
		}
	})
}

func TestMountedRootfsAsRoot(t *testing.T) {
	h := newHarness(t)
	// A typed rootfs is mounted by the agent (here a bind mount of the
	// busybox tree) under RootfsDir, and unmounted at delete.
	h.createOn("m1", minimalSpec(process(false, "sh", "-c", "echo mounted")), &agentapi.StdioConfig{Stdout: true},
		&agentapi.Mount{Source: h.rootfs, Type: "none", Options: []string{"bind", "ro"}})
	target := filepath.Join(h.rootfsDir, "m1")
	if !isMountPoint(t, target) {
		t.Fatalf("%s is not a mount point after create", target)
	}
	if _, err := h.client.StartContainer(h.ctx(), &agentapi.StartContainerRequest{ContainerId: "m1"}); err != nil {
		t.Fatal(err)
	}
	if got := h.read("m1", "", false); got != "mounted\n" {
		t.Errorf("stdout = %q", got)
	}
	if code := h.wait("m1", ""); code != 0 {
		t.Errorf("exit status = %d", code)
	}
	h.deleteContainer("m1")
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("rootfs mount point %s left after delete: %v", target, err)
	}
}

func TestSeccompAsRoot(t *testing.T) {
	if !seccomp.Enabled {
		t.Skip("built without the seccomp build tag")
	}
	h := newHarness(t)
	spec := minimalSpec(process(false, "sh", "-c", "mkdir /tmp/denied 2>/dev/null && exit 0 || exit 7"))
	spec.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno},
		},
	}
	h.create("s1", spec, nil)
	if _, err := h.client.StartContainer(h.ctx(), &agentapi.StartContainerRequest{ContainerId: "s1"}); err != nil {
		t.Fatal(err)
	}
	if code := h.wait("s1", ""); code != 7 {
		t.Errorf("exit status = %d, want 7: mkdir was not denied", code)
	}
	h.deleteContainer("s1")
}

func isMountPoint(t *testing.T, path string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

func ptr[T any](v T) *T { return &v }
