package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
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
	t.Helper()
	crictl := crictlPath()
	if _, err := os.Stat(crictl); err != nil {
		if os.Getenv("SCC_E2E_REQUIRED") != "" {
			t.Fatalf("crictl missing (make tools): %v", err)
		}
		t.Skipf("crictl missing (make tools): %v", err)
	}
	dir := filepath.Join(env.dir, "cri")
	if err := os.MkdirAll(filepath.Join(dir, "cni"), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := ctrd.Start(ctx, ctrd.Options{
		Dir:     dir,
		BinDir:  containerdBin(),
		ShimDir: env.binDir,
		CRI:     &ctrd.CRIOptions{SCCConfig: env.config, SandboxImage: imageRef},
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
	return &criEnv{d: d, crictl: crictl, dir: dir}
}

func (c *criEnv) run(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	ep := "unix://" + c.d.Address()
	all := append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "3m"}, args...)
	cmd := exec.CommandContext(ctx, c.crictl, all...)
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
		"log_directory": filepath.Join(c.dir, "logs"),
		"linux": map[string]any{"security_context": map[string]any{
			// The node's network: this test creates no CNI network.
			"namespace_options": map[string]any{"network": 2},
		}},
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
