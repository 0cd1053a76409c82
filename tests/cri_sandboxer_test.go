package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sandboxerNetns creates network namespace ns with its loopback up for a
// containerd of the test, and deletes it when the test ends.
func sandboxerNetns(t *testing.T, suffix string) string {
	t.Helper()
	ns := filepath.Base(env.dir) + "-" + suffix
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("loopback up: %v: %s", err, out)
	}
	return ns
}

// vmPids lists the QEMU processes of the tests' VMs.
func vmPids() []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("qemu-system")) || !bytes.Contains(b, []byte(env.run)) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// shimOf returns the pid of the scc shim started for id, 0 if none runs.
func shimOf(id string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		if !strings.HasSuffix(args[0], "containerd-shim-scc-v2") {
			continue
		}
		if i := slices.Index(args, "-id"); i >= 0 && i+1 < len(args) && args[i+1] == id {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	return 0
}

// sandboxSocket is the shim socket containerd recorded for the pod's
// sandbox (bootstrap.json in the sandbox controller's bundle).
func sandboxSocket(t *testing.T, c *criEnv, pod string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(c.dir, "state", "*", "k8s.io", pod, "bootstrap.json"))
	if len(files) != 1 {
		t.Fatalf("bootstrap.json of sandbox %s: found %v", pod, files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var bs struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(b, &bs); err != nil {
		t.Fatal(err)
	}
	sock, ok := strings.CutPrefix(bs.Address, "unix://")
	if !ok {
		t.Fatalf("shim address %q is not a unix socket", bs.Address)
	}
	return sock
}

// k8sTasks lists containerd's tasks in CRI's namespace: id -> pid.
func k8sTasks(t *testing.T, ctx context.Context, c *criEnv) map[string]string {
	t.Helper()
	out, err := c.d.CtrIn(ctx, "k8s.io", "tasks", "ls").Output()
	if err != nil {
		t.Fatalf("ctr tasks ls: %v", err)
	}
	tasks := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n")[1:] {
		if f := strings.Fields(l); len(f) >= 2 {
			tasks[f[0]] = f[1]
		}
	}
	return tasks
}

// TestCRISandboxerPod runs a pod of two containers through containerd's
// CRI with the scc handler as sandboxer ("shim"): the shim's sandbox API
// starts the pod's VM, with no pause container, on a CNI network of the
// test's own; the containers come through the task API to the same shim
// and VM. It checks exec, logs, container and pod stats, the pod's
// network from outside and port forwarding, then that stopping the pod
// stops its VM and removing it ends its shim and leaves nothing.
func TestCRISandboxerPod(t *testing.T) {
	requireEnv(t)
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Fatalf("CNI plugins missing (make deps): %v", err)
	}
	ctx := testContext(t)
	ns := sandboxerNetns(t, "sbxp")
	cni := `{"cniVersion": "1.0.0", "name": "scc-test", "plugins": [{"type": "bridge", "bridge": "scc0", "isGateway": true, "ipMasq": false,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.1.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "` + filepath.Join(env.dir, "cni-ipam-sbx") + `"}}]}`
	c := startCRISetup(t, ctx, criSetup{netns: ns, cniConf: cni, sccConfig: env.config, sandboxer: "shim"})

	podCfg := writeJSON(t, filepath.Join(c.dir, "pod.json"), map[string]any{
		"metadata":      map[string]any{"name": "sbxpod", "namespace": "default", "uid": "sbxpod-uid"},
		"hostname":      "sbx-host",
		"log_directory": filepath.Join(c.dir, "logs"),
		"dns_config":    map[string]any{"servers": []string{"10.99.1.53"}, "searches": []string{"sbx.example"}},
		"linux": map[string]any{
			"sysctls":   map[string]string{"kernel.shm_rmid_forced": "1"},
			"resources": map[string]any{"memory_limit_in_bytes": 128 << 20},
		},
	})
	pod := c.run(t, ctx, "runp", "--runtime", "scc", podCfg)
	t.Cleanup(func() {
		ctx := context.Background()
		nsenter := []string{"--net=/var/run/netns/" + ns, "--", c.crictl, "--runtime-endpoint", "unix://" + c.d.Address()}
		exec.CommandContext(ctx, "nsenter", append(nsenter, "stopp", pod)...).Run()
		exec.CommandContext(ctx, "nsenter", append(nsenter, "rmp", "-f", pod)...).Run()
	})

	// The sandbox API started the VM: one QEMU, no pause container.
	vm := qemuPid(t, filepath.Join(env.run, pod[:32]))
	if pids := vmPids(); len(pids) != 1 || pids[0] != vm {
		t.Errorf("QEMU processes %v, want the pod's VM %d only", pids, vm)
	}
	// The pod's memory limit is added to the VM's base 512 MiB.
	if cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(vm) + "/cmdline"); err != nil {
		t.Fatal(err)
	} else if !bytes.Contains(cmdline, []byte("\x00-m\x00640\x00")) && !bytes.Contains(cmdline, []byte("\x00-m\x00640,")) {
		t.Errorf("the pod's VM is not of 640 MiB: %q", cmdline)
	}
	if out, err := c.d.CtrIn(ctx, "k8s.io", "containers", "ls", "-q").Output(); err != nil {
		t.Fatal(err)
	} else if ids := strings.TrimSpace(string(out)); ids != "" {
		t.Errorf("containers of a pod without containers yet: %q (a pause container?)", ids)
	}
	if tasks := k8sTasks(t, ctx, c); len(tasks) != 0 {
		t.Errorf("tasks before any container: %v", tasks)
	}
	shim := shimOf(pod)
	if shim == 0 {
		t.Fatal("no shim runs for the pod")
	}
	sock := sandboxSocket(t, c, pod)
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("shim socket: %v", err)
	}
	var inspect struct {
		Status struct {
			State   string `json:"state"`
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
		Info struct {
			Pid int `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(c.run(t, ctx, "inspectp", pod)), &inspect); err != nil {
		t.Fatal(err)
	}
	if inspect.Status.State != "SANDBOX_READY" || inspect.Info.Pid != vm {
		t.Errorf("pod is %s with pid %d, want SANDBOX_READY and QEMU's %d", inspect.Status.State, inspect.Info.Pid, vm)
	}
	ip := inspect.Status.Network.IP
	if !strings.HasPrefix(ip, "10.99.1.") {
		t.Fatalf("pod IP %q is not on the CNI network", ip)
	}

	container := func(name, script string) string {
		return writeJSON(t, filepath.Join(c.dir, name+".json"), map[string]any{
			"metadata": map[string]any{"name": name},
			"image":    map[string]any{"image": imageRef},
			"command":  []string{"sh", "-c", script},
			"log_path": name + ".log",
		})
	}
	server := c.run(t, ctx, "create", pod, container("server",
		"mkdir /www && echo loop >/www/index.html && httpd -p 127.0.0.1:8081 -h /www && echo server-up && while true; do echo pong | nc -l -p 8080; done"), podCfg)
	client := c.run(t, ctx, "create", pod, container("client", "echo client-up; sleep 1000"), podCfg)
	c.run(t, ctx, "start", server)
	c.run(t, ctx, "start", client)

	if pids := vmPids(); len(pids) != 1 || pids[0] != vm {
		t.Errorf("QEMU processes %v with two containers, want the pod's VM %d only", pids, vm)
	}
	tasks := k8sTasks(t, ctx, c)
	if _, ok := tasks[pod]; ok || len(tasks) != 2 || tasks[server] == "" || tasks[client] == "" {
		t.Errorf("tasks %v, want the two containers' only", tasks)
	}
	if s := shimOf(server) + shimOf(client); s != 0 {
		t.Error("a shim was started for a container of the pod")
	}

	if got := c.run(t, ctx, "exec", client, "uname", "-r"); got == hostRelease(t) {
		t.Errorf("exec ran on the host kernel %s", got)
	}
	if got := c.run(t, ctx, "exec", client, "hostname"); got != "sbx-host" {
		t.Errorf("hostname %q, want sbx-host", got)
	}
	if got := c.run(t, ctx, "exec", client, "cat", "/proc/sys/kernel/shm_rmid_forced"); got != "1" {
		t.Errorf("kernel.shm_rmid_forced = %q, want 1", got)
	}
	// The pod's files, which CRI leaves to the sandboxer, and its
	// /dev/shm, which its containers share.
	if got := c.run(t, ctx, "exec", client, "cat", "/etc/hostname"); got != "sbx-host" {
		t.Errorf("/etc/hostname %q, want sbx-host", got)
	}
	if got := c.run(t, ctx, "exec", client, "cat", "/etc/resolv.conf"); got != "search sbx.example\nnameserver 10.99.1.53" {
		t.Errorf("/etc/resolv.conf %q, want the pod's DNS configuration", got)
	}
	if got := c.run(t, ctx, "exec", client, "grep", "-c", "localhost", "/etc/hosts"); got == "0" {
		t.Errorf("/etc/hosts without localhost")
	}
	c.run(t, ctx, "exec", server, "sh", "-c", "echo shared >/dev/shm/pod")
	if got := c.run(t, ctx, "exec", client, "cat", "/dev/shm/pod"); got != "shared" {
		t.Errorf("/dev/shm is not the pod's: the other container reads %q", got)
	}
	// The pod's containers share its network: the client reaches the
	// server on localhost; from outside, the pod answers at its IP.
	reach := func(what string, cmd ...string) {
		t.Helper()
		var reply string
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
			out, _ := exec.CommandContext(ctx, cmd[0], cmd[1:]...).Output()
			if reply = strings.TrimSpace(string(out)); reply == "pong" {
				return
			}
		}
		t.Errorf("%s: no pong (got %q)", what, reply)
	}
	netns := "--net=/var/run/netns/" + ns
	reach("client to server on localhost", "nsenter", netns, "--", c.crictl, "--runtime-endpoint", "unix://"+c.d.Address(), "exec", client, "sh", "-c", "nc 127.0.0.1 8080 </dev/null")
	reach("pod at "+ip+" from its network", "nsenter", netns, "--", "/bin/busybox", "nc", "-w", "5", ip, "8080")
	portForward(t, ctx, c, ns, pod)

	for id, want := range map[string]string{server: "server-up", client: "client-up"} {
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(c.run(t, ctx, "logs", id), want) {
			if time.Now().After(deadline) {
				t.Errorf("logs of %s lack %q", id, want)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	var stats struct {
		Stats []struct {
			Memory struct {
				WorkingSetBytes struct {
					Value string `json:"value"`
				} `json:"workingSetBytes"`
			} `json:"memory"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(c.run(t, ctx, "stats", "-o", "json", "--id", client)), &stats); err != nil {
		t.Fatal(err)
	}
	if len(stats.Stats) != 1 || stats.Stats[0].Memory.WorkingSetBytes.Value == "" {
		t.Errorf("container stats: %+v", stats.Stats)
	}
	// Pod stats come from the sandbox API's SandboxMetrics.
	var podStats struct {
		Stats []struct {
			Linux struct {
				CPU struct {
					UsageCoreNanoSeconds struct {
						Value string `json:"value"`
					} `json:"usageCoreNanoSeconds"`
				} `json:"cpu"`
				Memory struct {
					UsageBytes struct {
						Value string `json:"value"`
					} `json:"usageBytes"`
				} `json:"memory"`
			} `json:"linux"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(c.run(t, ctx, "statsp", "-o", "json", "--id", pod)), &podStats); err != nil {
		t.Fatal(err)
	}
	if len(podStats.Stats) != 1 {
		t.Fatalf("pod stats for %d pods, want 1", len(podStats.Stats))
	}
	if l := podStats.Stats[0].Linux; positive(l.CPU.UsageCoreNanoSeconds.Value) == 0 || positive(l.Memory.UsageBytes.Value) == 0 {
		t.Errorf("pod stats without CPU or memory usage: %+v", l)
	}

	c.run(t, ctx, "stop", "--timeout", "5", server, client)
	c.run(t, ctx, "rm", server, client)
	// containerd deletes the tasks' connections after rm returns: the
	// pod's VM and shim stay, for the pod.
	time.Sleep(2 * time.Second)
	if !processAlive(vm) || !processAlive(shim) {
		t.Fatalf("the pod's VM (%v) or shim (%v) went with its containers", processAlive(vm), processAlive(shim))
	}

	c.run(t, ctx, "stopp", pod)
	// Stopping the pod stops its VM; its shim stays until the pod is
	// removed.
	waitGone(t, vm, "the pod's VM after stopp")
	if err := json.Unmarshal([]byte(c.run(t, ctx, "inspectp", pod)), &inspect); err != nil {
		t.Fatal(err)
	}
	if inspect.Status.State != "SANDBOX_NOTREADY" {
		t.Errorf("stopped pod is %s, want SANDBOX_NOTREADY", inspect.Status.State)
	}
	if !processAlive(shim) {
		t.Error("the shim ended with stopp, before rmp")
	}
	c.run(t, ctx, "rmp", pod)
	waitGone(t, shim, "the pod's shim after rmp")
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("shim socket %s left: %v", sock, err)
	}
	if out := c.run(t, ctx, "pods", "-q"); out != "" {
		t.Errorf("pods left: %s", out)
	}
}

// TestCRISandboxerHostNetwork runs a host-network pod whose web server
// listens on the guest's loopback, with containerd's CRI using the shim
// as sandboxer in a network namespace of the test's own (the node's, for
// the pod): the port the pod declares is published on the node's
// loopback, and crictl port-forward, which dials the node's
// localhost:<port> for such a pod, reaches the server through it.
func TestCRISandboxerHostNetwork(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	ns := sandboxerNetns(t, "sbxh")
	c := startCRISetup(t, ctx, criSetup{netns: ns, sccConfig: env.config, sandboxer: "shim"})
	podCfg := writeJSON(t, filepath.Join(c.dir, "hostnet.json"), map[string]any{
		"metadata":      map[string]any{"name": "hostnet", "namespace": "default", "uid": "hostnet-uid"},
		"log_directory": filepath.Join(c.dir, "logs"),
		"port_mappings": []map[string]any{{"container_port": 8081}},
		"linux": map[string]any{"security_context": map[string]any{
			"namespace_options": map[string]any{"network": 2},
		}},
	})
	pod := c.run(t, ctx, "runp", "--runtime", "scc", podCfg)
	netns := "--net=/var/run/netns/" + ns
	t.Cleanup(func() {
		ctx := context.Background()
		nsenter := []string{netns, "--", c.crictl, "--runtime-endpoint", "unix://" + c.d.Address()}
		exec.CommandContext(ctx, "nsenter", append(nsenter, "stopp", pod)...).Run()
		exec.CommandContext(ctx, "nsenter", append(nsenter, "rmp", "-f", pod)...).Run()
	})
	srvCfg := writeJSON(t, filepath.Join(c.dir, "web.json"), map[string]any{
		"metadata": map[string]any{"name": "web"},
		"image":    map[string]any{"image": imageRef},
		"command":  []string{"sh", "-c", "mkdir /www && echo loop >/www/index.html && exec httpd -f -p 127.0.0.1:8081 -h /www"},
		"log_path": "web.log",
	})
	web := c.run(t, ctx, "create", pod, srvCfg, podCfg)
	c.run(t, ctx, "start", web)

	// The declared port, on the node's loopback.
	var page string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		get := exec.CommandContext(ctx, "nsenter", netns, "--", "/bin/busybox", "nc", "-w", "10", "127.0.0.1", "8081")
		get.Stdin = strings.NewReader("GET /index.html HTTP/1.0\r\n\r\n")
		out, _ := get.Output()
		if page = string(out); strings.HasSuffix(page, "\r\n\r\nloop\n") {
			break
		}
	}
	if !strings.HasSuffix(page, "\r\n\r\nloop\n") {
		t.Errorf("no page on the node's 127.0.0.1:8081 (got %q)", page)
	}
	portForward(t, ctx, c, ns, pod)

	c.run(t, ctx, "stop", "--timeout", "5", web)
	c.run(t, ctx, "rm", web)
	c.run(t, ctx, "stopp", pod)
	// The port goes with the pod's VM.
	if err := exec.CommandContext(ctx, "nsenter", netns, "--", "/bin/busybox", "nc", "-z", "-w", "2", "127.0.0.1", "8081").Run(); err == nil {
		t.Error("port 8081 is still published after the pod stopped")
	}
	c.run(t, ctx, "rmp", pod)
}

// TestCRISandboxerAnnotationNotAllowed asks for a VM setting the
// configuration does not enable, through the sandbox API: the pod is
// refused, saying why, and its shim ends.
func TestCRISandboxerAnnotationNotAllowed(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	c := startCRISetup(t, ctx, criSetup{sccConfig: env.config, sandboxer: "shim"})
	podCfg := writeJSON(t, filepath.Join(c.dir, "annotated.json"), map[string]any{
		"metadata":      map[string]any{"name": "annotated", "namespace": "default", "uid": "annotated-uid"},
		"annotations":   map[string]string{"io.scc.vm.memory_mib": "1024"},
		"log_directory": filepath.Join(c.dir, "logs"),
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
	})
	ep := "unix://" + c.d.Address()
	out, err := exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", ep, "runp", "--runtime", "scc", podCfg).CombinedOutput()
	if err == nil {
		t.Fatalf("a pod with a disabled annotation ran: %s", out)
	}
	if !strings.Contains(string(out), "io.scc.vm.memory_mib") {
		t.Errorf("refusal does not name the annotation: %s", out)
	}
	if ids := c.run(t, ctx, "pods", "-q"); ids != "" {
		t.Errorf("a refused pod is listed: %s", ids)
		exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", ep, "rmp", "-f", ids).Run()
	}
	deadline := time.Now().Add(15 * time.Second)
	for shimRuns(c.d.Address()) {
		if time.Now().After(deadline) {
			t.Fatal("the shim of the refused pod still runs")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// shimRuns reports whether an scc shim of the containerd at address runs.
func shimRuns(address string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte("containerd-shim-scc-v2")) && bytes.Contains(b, []byte(address)) {
			return true
		}
	}
	return false
}

// positive parses a CRI counter, 0 if it is not a positive number.
func positive(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// processAlive reports whether process pid runs (a zombie does not).
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// waitGone waits up to 30 s for process pid to end.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: process %d still runs", what, pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCRISandboxerFaults kills, under a running pod of the sandbox API,
// its VM, then (in another pod) its shim. Either way CRI learns the pod
// stopped (WaitSandbox, or the shim's connection), the pod's container
// is reported killed, and removing the pod leaves nothing.
func TestCRISandboxerFaults(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	c := startCRISetup(t, ctx, criSetup{sccConfig: env.config, sandboxer: "shim"})
	for _, tc := range []struct {
		name   string
		victim func(vm, shim int) int
		// exits are the container's exit codes CRI may report: 137 from
		// the shim for a VM that died; CRI's own 255 ("unknown") when the
		// shim's connection closes before its exit reached CRI.
		exits []int
	}{
		{"vm", func(vm, _ int) int { return vm }, []int{137}},
		{"shim", func(_, shim int) int { return shim }, []int{137, 255}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := runPod(t, ctx, c, "fault-"+tc.name)
			ctr := pod.create(t, ctx, "sleeper", map[string]any{"command": []string{"sleep", "1000"}})
			c.run(t, ctx, "start", ctr)
			vm := qemuPid(t, filepath.Join(env.run, pod.id[:32]))
			shim := shimOf(pod.id)
			if shim == 0 {
				t.Fatal("no shim runs for the pod")
			}
			if err := syscall.Kill(tc.victim(vm, shim), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// Until containerd has noticed the shim's connection closed,
			// the pod's status may fail: keep asking.
			deadline := time.Now().Add(time.Minute)
			for {
				var inspect struct {
					Status struct {
						State string `json:"state"`
					} `json:"status"`
				}
				out, err := exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", "unix://"+c.d.Address(), "inspectp", pod.id).Output()
				if err == nil && json.Unmarshal(out, &inspect) == nil && inspect.Status.State == "SANDBOX_NOTREADY" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("pod is %q (%v) a minute after its %s was killed", inspect.Status.State, err, tc.name)
				}
				time.Sleep(300 * time.Millisecond)
			}
			st := c.waitStatus(t, ctx, ctr, time.Minute, func(s criStatus) bool { return s.State == "CONTAINER_EXITED" })
			if !slices.Contains(tc.exits, st.ExitCode) {
				t.Errorf("container of the pod exited %d, want one of %v", st.ExitCode, tc.exits)
			}
			waitGone(t, vm, "the pod's VM")
			c.run(t, ctx, "rm", ctr)
			c.run(t, ctx, "stopp", pod.id)
			c.run(t, ctx, "rmp", pod.id)
			waitGone(t, shim, "the pod's shim")
		})
	}
}
