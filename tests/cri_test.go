package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sccontainers/scc/internal/ctrd"
	"github.com/sccontainers/scc/internal/ocilayout"
)

// criEnv is a private containerd with the CRI plugin and crictl for it.
type criEnv struct {
	d      *ctrd.Daemon
	crictl string
	dir    string
	netns  string // containerd's network namespace, where its streaming server listens
}

func crictlPath() string {
	if p := os.Getenv("CRICTL"); p != "" {
		return p
	}
	return "/var/cache/scc/tools/bin/crictl"
}

// startCRI starts a containerd with CRI whose "scc" handler uses the
// tests' shim configuration, and imports the busybox image (also the pod
// sandbox image) into the k8s.io namespace.
func startCRI(t *testing.T, ctx context.Context) *criEnv {
	return startCRIWith(t, ctx, "", "", env.config)
}

// startCRIWith runs containerd in network namespace netns (when set) with
// cniConf as its CNI network.
func startCRIWith(t *testing.T, ctx context.Context, netns, cniConf, sccConfig string) *criEnv {
	t.Helper()
	return startCRISetup(t, ctx, criSetup{netns: netns, cniConf: cniConf, sccConfig: sccConfig})
}

// criSetup is the containerd startCRISetup runs.
type criSetup struct {
	// netns, when set, is the network namespace containerd runs in.
	netns string
	// cniConf is its CNI network's configuration, if any.
	cniConf string
	// sccConfig is the configuration of the shim of the "scc" handler.
	sccConfig string
	// sandboxer is the "scc" handler's sandbox controller: "" for CRI's
	// pause containers, "shim" for the shim's sandbox API.
	sandboxer string
}

func startCRISetup(t *testing.T, ctx context.Context, o criSetup) *criEnv {
	t.Helper()
	crictl := crictlPath()
	if _, err := os.Stat(crictl); err != nil {
		if os.Getenv("SCC_E2E_REQUIRED") != "" {
			t.Fatalf("crictl missing (make tools): %v", err)
		}
		t.Skipf("crictl missing (make tools): %v", err)
	}
	netns, cniConf, sccConfig := o.netns, o.cniConf, o.sccConfig
	name := "cri"
	if o.sandboxer != "" {
		name = "cris"
	}
	dir := filepath.Join(env.dir, name)
	if netns != "" {
		dir = filepath.Join(env.dir, name+"n-"+netns[len(netns)-4:])
	}
	if err := os.MkdirAll(filepath.Join(dir, "cni"), 0o755); err != nil {
		t.Fatal(err)
	}
	if cniConf != "" {
		if err := os.WriteFile(filepath.Join(dir, "cni", "10-scc-test.conflist"), []byte(cniConf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, err := ctrd.Start(ctx, ctrd.Options{
		Dir:     dir,
		BinDir:  containerdBin(),
		ShimDir: env.binDir,
		NetNS:   netns,
		CRI:     &ctrd.CRIOptions{SCCConfig: sccConfig, SandboxImage: imageRef, Sandboxer: o.sandboxer},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(context.Background()) })
	var img bytes.Buffer
	if err := ocilayout.WriteBusybox(&img, ocilayout.BusyboxOptions{Busybox: "/bin/busybox", Ref: imageRef}); err != nil {
		t.Fatal(err)
	}
	imp := d.CtrIn(ctx, "k8s.io", "images", "import", "-")
	imp.Stdin = &img
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("import: %v: %s", err, out)
	}
	return &criEnv{d: d, crictl: crictl, dir: dir, netns: netns}
}

func (c *criEnv) run(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	ep := "unix://" + c.d.Address()
	all := append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "3m"}, args...)
	cmd := exec.CommandContext(ctx, c.crictl, all...)
	if c.netns != "" {
		// exec and logs stream from containerd's server on its loopback.
		cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=/var/run/netns/" + c.netns, "--", c.crictl}, all...)...)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("crictl %s: %v: %s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func writeJSON(t *testing.T, path string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCRIPodTwoContainers runs a pod of two containers through CRI with
// the scc handler: one VM, shared pod network, exec, logs, stats, stop, rm.
func TestCRIPodTwoContainers(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	c := startCRI(t, ctx)

	podCfg := writeJSON(t, filepath.Join(c.dir, "pod.json"), map[string]any{
		"metadata":      map[string]any{"name": "pod1", "namespace": "default", "uid": "pod1-uid"},
		"hostname":      "pod1-host",
		"log_directory": filepath.Join(c.dir, "logs"),
		"linux": map[string]any{
			"sysctls": map[string]string{"kernel.shm_rmid_forced": "1"},
			"security_context": map[string]any{
				// The node's network: this test creates no CNI network.
				"namespace_options": map[string]any{"network": 2},
			},
		},
	})
	container := func(name, script string) string {
		return writeJSON(t, filepath.Join(c.dir, name+".json"), map[string]any{
			"metadata": map[string]any{"name": name},
			"image":    map[string]any{"image": imageRef},
			"command":  []string{"sh", "-c", script},
			"log_path": name + ".log",
		})
	}
	pod := c.run(t, ctx, "runp", "--runtime", "scc", podCfg)
	t.Cleanup(func() {
		ctx := context.Background()
		exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", "unix://"+c.d.Address(), "stopp", pod).Run()
		exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", "unix://"+c.d.Address(), "rmp", "-f", pod).Run()
	})
	server := c.run(t, ctx, "create", pod, container("server", "echo server-up; while true; do echo pong | nc -l -p 8080; done"), podCfg)
	client := c.run(t, ctx, "create", pod, container("client", "echo client-up; sleep 1000"), podCfg)
	c.run(t, ctx, "start", server)
	c.run(t, ctx, "start", client)

	// One VM for the pod.
	vms := 0
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte("qemu-system")) && bytes.Contains(b, []byte(env.run)) {
			vms++
		}
	}
	if vms != 1 {
		t.Errorf("%d VMs run for one pod, want 1", vms)
	}

	if got := c.run(t, ctx, "exec", client, "uname", "-r"); got == hostRelease(t) {
		t.Errorf("exec ran on the host kernel %s", got)
	}
	// The pod's hostname and sysctls hold in its VM.
	if got := c.run(t, ctx, "exec", client, "hostname"); got != "pod1-host" {
		t.Errorf("hostname %q, want pod1-host", got)
	}
	if got := c.run(t, ctx, "exec", client, "cat", "/proc/sys/kernel/shm_rmid_forced"); got != "1" {
		t.Errorf("kernel.shm_rmid_forced = %q, want 1", got)
	}
	// The pod's containers share its network: the client reaches the
	// server on localhost.
	var reply string
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		out, err := exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", "unix://"+c.d.Address(), "exec", client, "sh", "-c", "nc 127.0.0.1 8080 </dev/null").Output()
		if reply = strings.TrimSpace(string(out)); err == nil && reply == "pong" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if reply != "pong" {
		t.Errorf("client could not reach the server on localhost: %q", reply)
	}

	for _, id := range []string{server, client} {
		want := map[string]string{server: "server-up", client: "client-up"}[id]
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
	if len(stats.Stats) != 1 {
		t.Errorf("stats for %d containers, want 1", len(stats.Stats))
	}

	c.run(t, ctx, "stop", "--timeout", "5", server, client)
	c.run(t, ctx, "rm", server, client)
	c.run(t, ctx, "stopp", pod)
	c.run(t, ctx, "rmp", pod)
	if out := c.run(t, ctx, "pods", "-q"); out != "" {
		t.Errorf("pods left: %s", out)
	}
}

func hostRelease(t *testing.T) string {
	var u runtimeUname
	u.read(t)
	return u.release
}

// TestCRIPodNetwork runs a pod on a CNI bridge network, in a network
// namespace of the test's own, and reaches a server in the pod's VM at
// the pod's IP from outside the pod: once with a VM that boots, once with
// a VM restored from a template, which gets its interface by hotplug.
func TestCRIPodNetwork(t *testing.T) {
	requireEnv(t)
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Fatalf("CNI plugins missing (make deps): %v", err)
	}
	restoreCfg, _ := snapshotConfig(t, "crinet", false)
	poolCfg := poolConfig(t, "crinetpool", 1)
	reuseCfg := reuseConfig(t, "crinetreuse")
	for _, tc := range []struct {
		name, config     string
		restored, pooled bool
		reused           bool
	}{
		{"boot", env.config, false, false, false},
		{"restore", restoreCfg, true, false, false},
		// The pooled VM's QEMU started before the pod's network existed.
		{"pool", poolCfg, true, true, false},
		// The second pod's VM is the first's, whose interface was
		// removed and whose guest was cleaned.
		{"reuse", reuseCfg, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			pooledPid := 0
			switch {
			case tc.pooled:
				drainAtEnd(t, tc.config)
				scc(t, ctx, "pool", "fill", "--config", tc.config)
				vms := readyVMs(t, ctx, tc.config)
				if len(vms) != 1 {
					t.Fatalf("after fill: %d ready VMs, want 1", len(vms))
				}
				pooledPid = qemuPid(t, vms[0].dir)
			case tc.restored:
				scc(t, ctx, "snapshot", "create", "--config", tc.config)
			}
			ns := filepath.Base(env.dir) + "-" + tc.name
			if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
				t.Fatalf("ip netns add: %v: %s", err, out)
			}
			t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
			exec.Command("ip", "-n", ns, "link", "set", "lo", "up").Run()
			cni := `{"cniVersion": "1.0.0", "name": "scc-test", "plugins": [{"type": "bridge", "bridge": "scc0", "isGateway": true, "ipMasq": false,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "` + filepath.Join(env.dir, "cni-ipam-"+tc.name) + `"}}]}`
			c := startCRIWith(t, ctx, ns, cni, tc.config)
			podNetwork(t, ctx, c, ns, tc.restored, pooledPid)
			if tc.reused {
				drainAtEnd(t, tc.config)
				vms := waitReady(t, ctx, tc.config, 1)
				pid := qemuPid(t, vms[0].dir)
				podNetwork(t, ctx, c, ns, false, pid)
				// Back in the pool, its interface removed again.
				if vms = waitReady(t, ctx, tc.config, 1); qemuPid(t, vms[0].dir) != pid {
					t.Errorf("pooled VM after the second pod is QEMU %d, want %d", qemuPid(t, vms[0].dir), pid)
				}
			}
		})
	}
}

// podNetwork runs a server in a pod and reaches it from the pod's network
// namespace. restored says whether the pod's VM must have been restored,
// pooledPid, when set, which pooled QEMU it must run in.
func podNetwork(t *testing.T, ctx context.Context, c *criEnv, ns string, restored bool, pooledPid int) {
	podCfg := writeJSON(t, filepath.Join(c.dir, "pod.json"), map[string]any{
		"metadata":      map[string]any{"name": "netpod", "namespace": "default", "uid": "netpod-uid"},
		"log_directory": filepath.Join(c.dir, "logs"),
	})
	pod := c.run(t, ctx, "runp", "--runtime", "scc", podCfg)
	t.Cleanup(func() {
		ctx := context.Background()
		exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", "unix://"+c.d.Address(), "stopp", pod).Run()
		exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", "unix://"+c.d.Address(), "rmp", "-f", pod).Run()
	})
	pid := qemuPid(t, filepath.Join(env.run, pod[:32]))
	if pooledPid != 0 && pid != pooledPid {
		t.Errorf("pod VM is QEMU %d, the pooled VM was %d", pid, pooledPid)
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	if got := bytes.Contains(b, []byte("-incoming")); got != restored {
		t.Errorf("VM restored: %v, want %v", got, restored)
	}
	srvCfg := writeJSON(t, filepath.Join(c.dir, "srv.json"), map[string]any{
		"metadata": map[string]any{"name": "srv"},
		"image":    map[string]any{"image": imageRef},
		// A web server on the pod's loopback only, for port forwarding.
		"command":  []string{"sh", "-c", "mkdir /www && echo loop >/www/index.html && httpd -p 127.0.0.1:8081 -h /www && while true; do echo pong | nc -l -p 8080; done"},
		"log_path": "srv.log",
	})
	srv := c.run(t, ctx, "create", pod, srvCfg, podCfg)
	c.run(t, ctx, "start", srv)

	var inspect struct {
		Status struct {
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(c.run(t, ctx, "inspectp", pod)), &inspect); err != nil {
		t.Fatal(err)
	}
	ip := inspect.Status.Network.IP
	if !strings.HasPrefix(ip, "10.99.0.") {
		t.Fatalf("pod IP %q is not on the CNI network", ip)
	}
	// The guest has the pod's address.
	if out := c.run(t, ctx, "exec", srv, "ip", "-4", "addr", "show", "eth0"); !strings.Contains(out, ip+"/24") {
		t.Errorf("guest eth0 lacks %s/24:\n%s", ip, out)
	}
	var reply string
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		out, _ := exec.CommandContext(ctx, "nsenter", "--net=/var/run/netns/"+ns, "--", "/bin/busybox", "nc", "-w", "5", ip, "8080").Output()
		if reply = strings.TrimSpace(string(out)); reply == "pong" {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if reply != "pong" {
		t.Errorf("no answer from the pod at %s:8080 (got %q)", ip, reply)
	}
	portForward(t, ctx, c, ns, pod)
	c.run(t, ctx, "stop", "--timeout", "5", srv)
	c.run(t, ctx, "rm", srv)
	c.run(t, ctx, "stopp", pod)
	c.run(t, ctx, "rmp", pod)
}

// TestCRIPodAnnotationNotAllowed asks for a VM setting through an io.scc.*
// annotation the configuration does not enable: the pod is refused, and
// says why.
func TestCRIPodAnnotationNotAllowed(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	c := startCRI(t, ctx)
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
	// Clean up what CRI keeps of a refused pod, if anything.
	if ids := c.run(t, ctx, "pods", "-q"); ids != "" {
		exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", ep, "rmp", "-f", ids).Run()
	}
}

// portForward forwards a local port to port 8081 of the pod, where a web
// server listens on the pod's loopback (the guest's), and fetches its page
// through it, in containerd's network namespace ns.
func portForward(t *testing.T, ctx context.Context, c *criEnv, ns, pod string) {
	t.Helper()
	netns := "--net=/var/run/netns/" + ns
	pf := exec.CommandContext(ctx, "nsenter", netns, "--", c.crictl, "--runtime-endpoint", "unix://"+c.d.Address(), "port-forward", pod, "18081:8081")
	var pfOut bytes.Buffer
	pf.Stdout, pf.Stderr = &pfOut, &pfOut
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		pf.Process.Kill()
		pf.Wait()
	}()
	var page string
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		get := exec.CommandContext(ctx, "nsenter", netns, "--", "/bin/busybox", "nc", "-w", "10", "127.0.0.1", "18081")
		get.Stdin = strings.NewReader("GET /index.html HTTP/1.0\r\n\r\n")
		out, _ := get.Output()
		if page = string(out); strings.HasSuffix(page, "\r\n\r\nloop\n") {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Errorf("no page through port forwarding to the pod's loopback (got %q); crictl port-forward: %s", page, pfOut.String())

}
