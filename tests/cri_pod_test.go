package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criPod is a pod on the node's network run through CRI with the scc
// handler; it is removed when the test ends.
type criPod struct {
	c   *criEnv
	id  string
	cfg string // the pod config file, which crictl create needs again
}

func runPod(t *testing.T, ctx context.Context, c *criEnv, name string) *criPod {
	t.Helper()
	cfg := writeJSON(t, filepath.Join(c.dir, name+"-pod.json"), map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid"},
		"log_directory": filepath.Join(c.dir, "logs", name),
		"linux": map[string]any{"security_context": map[string]any{
			// The node's network: these tests create no CNI network.
			"namespace_options": map[string]any{"network": 2},
		}},
	})
	id := c.run(t, ctx, "runp", "--runtime", "scc", cfg)
	t.Cleanup(func() {
		ctx := context.Background()
		ep := "unix://" + c.d.Address()
		exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", ep, "stopp", id).Run()
		exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", ep, "rmp", "-f", id).Run()
	})
	return &criPod{c: c, id: id, cfg: cfg}
}

// create creates a container in the pod from a CRI container config, to
// which it adds the metadata, the image and the log path.
func (p *criPod) create(t *testing.T, ctx context.Context, name string, config map[string]any) string {
	t.Helper()
	config["metadata"] = map[string]any{"name": name}
	config["image"] = map[string]any{"image": imageRef}
	config["log_path"] = name + ".log"
	path := writeJSON(t, filepath.Join(p.c.dir, p.id[:12]+"-"+name+".json"), config)
	return p.c.run(t, ctx, "create", p.id, path, p.cfg)
}

// criStatus is what crictl inspect tells of a container.
type criStatus struct {
	State    string `json:"state"`
	Reason   string `json:"reason"`
	ExitCode int    `json:"exitCode"`
}

func (c *criEnv) inspect(t *testing.T, ctx context.Context, id string) criStatus {
	t.Helper()
	var out struct {
		Status criStatus `json:"status"`
	}
	if err := json.Unmarshal([]byte(c.run(t, ctx, "inspect", "-o", "json", id)), &out); err != nil {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return out.Status
}

// waitStatus polls a container's status until ok accepts it, and fails
// the test with the last status after timeout.
func (c *criEnv) waitStatus(t *testing.T, ctx context.Context, id string, timeout time.Duration, ok func(criStatus) bool) criStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := c.inspect(t, ctx, id)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: status %+v after %s", id, st, timeout)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestCRIOOM runs containers whose processes the guest's OOM killer
// kills for their memory limit. A container whose init is killed exits 137
// with reason OOMKilled, which containerd learns from the memory events in
// the container's stats. One whose child is killed runs on, and only the
// TaskOOM event the shim publishes tells containerd; the pod's metrics
// count the kill.
func TestCRIOOM(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	c := startCRI(t, ctx)
	pod := runPod(t, ctx, c, "oom")
	limited := func(script string) map[string]any {
		return map[string]any{
			"command": []string{"sh", "-c", script},
			"linux":   map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 32 << 20}},
		}
	}
	victim := pod.create(t, ctx, "victim", limited("exec dd if=/dev/zero of=/dev/null bs=256M"))
	survivor := pod.create(t, ctx, "survivor", limited("dd if=/dev/zero of=/dev/null bs=256M; echo survived; exec sleep 1000"))
	c.run(t, ctx, "start", victim)
	c.run(t, ctx, "start", survivor)

	st := c.waitStatus(t, ctx, victim, time.Minute, func(s criStatus) bool { return s.State == "CONTAINER_EXITED" })
	if st.ExitCode != 137 || st.Reason != "OOMKilled" {
		t.Errorf("victim exited %d with reason %q, want 137 and OOMKilled", st.ExitCode, st.Reason)
	}
	st = c.waitStatus(t, ctx, survivor, time.Minute, func(s criStatus) bool { return s.Reason != "" })
	if st.State != "CONTAINER_RUNNING" || st.Reason != "OOMKilled" {
		t.Errorf("survivor is %s with reason %q (exit %d), want running and OOMKilled", st.State, st.Reason, st.ExitCode)
	}
	if logs := c.run(t, ctx, "logs", survivor); !strings.Contains(logs, "survived") {
		t.Errorf("survivor's shell did not outlive dd: %q", logs)
	}

	var metrics struct {
		PodMetrics []struct {
			ContainerMetrics []struct {
				ContainerID string `json:"containerId"`
				Metrics     []struct {
					Name  string `json:"name"`
					Value struct {
						Value string `json:"value"`
					} `json:"value"`
				} `json:"metrics"`
			} `json:"containerMetrics"`
		} `json:"podMetrics"`
	}
	if err := json.Unmarshal([]byte(c.run(t, ctx, "metricsp", "-o", "json")), &metrics); err != nil {
		t.Fatal(err)
	}
	ooms := map[string]string{}
	for _, pm := range metrics.PodMetrics {
		for _, cm := range pm.ContainerMetrics {
			for _, m := range cm.Metrics {
				if m.Name == "container_oom_events_total" {
					ooms[cm.ContainerID] = m.Value.Value
				}
			}
		}
	}
	if got := ooms[survivor]; got == "" || got == "0" {
		t.Errorf("container_oom_events_total of the survivor = %q, want at least 1 (all: %v)", got, ooms)
	}

	c.run(t, ctx, "stop", "--timeout", "2", survivor)
	c.run(t, ctx, "rm", victim, survivor)
}

// TestCRIPodContainerExits lets one container of a pod exit while another
// runs: CRI deletes the exited task at once, and containerd then runs the
// shim's delete for it, which must leave the pod's VM to the live shim.
func TestCRIPodContainerExits(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	c := startCRI(t, ctx)
	pod := runPod(t, ctx, c, "exits")
	short := pod.create(t, ctx, "short", map[string]any{"command": []string{"true"}})
	long := pod.create(t, ctx, "long", map[string]any{"command": []string{"sleep", "1000"}})
	c.run(t, ctx, "start", long)
	c.run(t, ctx, "start", short)
	c.waitStatus(t, ctx, short, time.Minute, func(s criStatus) bool { return s.State == "CONTAINER_EXITED" })
	c.run(t, ctx, "rm", short)
	// containerd's cleanup of the deleted task runs after rm returns.
	time.Sleep(2 * time.Second)
	if st := c.inspect(t, ctx, long); st.State != "CONTAINER_RUNNING" {
		t.Fatalf("the other container is %s (exit %d) after one exited", st.State, st.ExitCode)
	}
	if out := c.run(t, ctx, "exec", long, "echo", "alive"); out != "alive" {
		t.Errorf("exec after the other container exited: %q", out)
	}
	c.run(t, ctx, "stop", "--timeout", "2", long)
	c.run(t, ctx, "rm", long)
}

// exec runs a command in a container and returns its combined output and
// whether it succeeded.
func (c *criEnv) exec(t *testing.T, ctx context.Context, id string, cmd ...string) (string, bool) {
	t.Helper()
	ep := "unix://" + c.d.Address()
	args := append([]string{"--runtime-endpoint", ep, "exec", id}, cmd...)
	out, err := exec.CommandContext(ctx, c.crictl, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err == nil
}

// TestCRIReadOnlyMounts mounts a host directory holding a tmpfs read-only
// into a pod container, once plainly and once recursively read-only
// ("rro", which containerd allows only for handlers whose features list
// it). As with runc, the plain mount leaves the tmpfs writable, and the
// recursive one makes it read-only too.
func TestCRIReadOnlyMounts(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	c := startCRI(t, ctx)

	var info struct {
		RuntimeHandlers []struct {
			Name     string `json:"name"`
			Features struct {
				RecursiveReadOnlyMounts bool `json:"recursive_read_only_mounts"`
			} `json:"features"`
		} `json:"runtimeHandlers"`
	}
	if err := json.Unmarshal([]byte(c.run(t, ctx, "info", "-o", "json")), &info); err != nil {
		t.Fatal(err)
	}
	rro := false
	for _, h := range info.RuntimeHandlers {
		if h.Name == "scc" {
			rro = h.Features.RecursiveReadOnlyMounts
		}
	}
	if !rro {
		t.Errorf("containerd does not see recursive read-only mounts among scc's features: %+v", info.RuntimeHandlers)
	}

	host := t.TempDir()
	tmpfs := filepath.Join(host, "tmpfs")
	if err := os.Mkdir(tmpfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("none", tmpfs, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(tmpfs, unix.MNT_DETACH) }) // unless the test got to it

	pod := runPod(t, ctx, c, "romounts")
	mounts := []map[string]any{{"container_path": "/ro", "host_path": host, "readonly": true}}
	if rro {
		mounts = append(mounts, map[string]any{"container_path": "/rro", "host_path": host, "readonly": true, "recursive_read_only": true})
	}
	ctr := pod.create(t, ctx, "ro", map[string]any{"command": []string{"sleep", "1000"}, "mounts": mounts})
	c.run(t, ctx, "start", ctr)

	if out, ok := c.exec(t, ctx, ctr, "touch", "/ro/file"); ok {
		t.Error("wrote to the read-only mount")
	} else if !strings.Contains(out, "Read-only file system") {
		t.Errorf("touch /ro/file: %s", out)
	}
	if out, ok := c.exec(t, ctx, ctr, "touch", "/ro/tmpfs/file"); !ok {
		t.Errorf("the tmpfs below a non-recursive read-only mount is not writable: %s", out)
	} else if _, err := os.Stat(filepath.Join(tmpfs, "file")); err != nil {
		t.Errorf("the file written to the tmpfs is not on the host's tmpfs: %v", err)
	}
	if rro {
		if out, ok := c.exec(t, ctx, ctr, "touch", "/rro/tmpfs/other"); ok {
			t.Error("wrote below a recursively read-only mount")
		} else if !strings.Contains(out, "Read-only file system") {
			t.Errorf("touch /rro/tmpfs/other: %s", out)
		}
	}
	// As with runc, whose mounts are the container's, the host can take
	// its tmpfs down and remove the directory while the container runs.
	if err := unix.Unmount(tmpfs, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(tmpfs); err != nil {
		t.Errorf("remove the host's mount point while the container runs: %v", err)
	}
	c.run(t, ctx, "stop", "--timeout", "2", ctr)
	c.run(t, ctx, "rm", ctr)
}

// TestCRIStopRightAfterStart stops containers within a millisecond of
// their start, as critest and kubelet may, through the CRI API itself:
// crictl would leave the program time to start. Each container runs top
// as the init of its own PID namespace, which the kernel spares signals it
// has no handler for yet; the SIGTERM must still reach top (exit 143),
// not wait out the stop timeout for a SIGKILL (137).
func TestCRIStopRightAfterStart(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	c := startCRI(t, ctx)
	pod := runPod(t, ctx, c, "stopstart")
	conn, err := grpc.NewClient("unix://"+c.d.Address(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc := runtime.NewRuntimeServiceClient(conn)
	for i := range 3 {
		id := pod.create(t, ctx, fmt.Sprintf("top%d", i), map[string]any{
			"command": []string{"top"},
			"linux":   map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"pid": 1}}},
		})
		if _, err := rc.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 20}); err != nil {
			t.Fatal(err)
		}
		if st := c.inspect(t, ctx, id); st.ExitCode != 128+int(unix.SIGTERM) {
			t.Errorf("container %d stopped right after its start exited %d, want %d (SIGTERM)", i, st.ExitCode, 128+int(unix.SIGTERM))
		}
		c.run(t, ctx, "rm", id)
	}
}

// TestCRIUpdateGrowsVM raises a pod container's CPU and memory limits
// above what its VM has: the VM gets vCPUs and memory plugged, which the
// guest brings online, and the container's cgroup takes the new limits.
func TestCRIUpdateGrowsVM(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	cfg := filepath.Join(env.dir, "grow.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("state_dir = %q\nguest_dir = %q\n\n[snapshot]\nenabled = false\n\n[vm]\nlog_dir = %q\nboot_timeout = \"90s\"\nmax_vcpus = 3\nmax_memory_mib = 1536\n",
		env.run, guestDir(), env.logs)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCRIWith(t, ctx, "", "", cfg)
	pod := runPod(t, ctx, c, "grow")
	ctr := pod.create(t, ctx, "grow", map[string]any{"command": []string{"sleep", "1000"}})
	c.run(t, ctx, "start", ctr)

	memTotal := func() int {
		out := c.run(t, ctx, "exec", ctr, "grep", "MemTotal", "/proc/meminfo")
		var kb int
		if _, err := fmt.Sscanf(out, "MemTotal: %d kB", &kb); err != nil {
			t.Fatalf("meminfo %q: %v", out, err)
		}
		return kb >> 10
	}
	if n := c.run(t, ctx, "exec", ctr, "nproc"); n != "1" {
		t.Fatalf("the VM starts with %s vCPUs, want 1", n)
	}
	before := memTotal()

	// 2 vCPUs and 300 MiB for the container, on top of the VM's 1 vCPU and
	// 512 MiB: 3 vCPUs, and 384 MiB (whole memory blocks) more.
	c.run(t, ctx, "update", "--cpu-period", "100000", "--cpu-quota", "200000", "--memory", strconv.Itoa(300<<20), ctr)
	if n := c.run(t, ctx, "exec", ctr, "nproc"); n != "3" {
		t.Errorf("after the update the guest has %s vCPUs online, want 3", n)
	}
	if after := memTotal(); after-before < 300 {
		t.Errorf("guest memory went from %d to %d MiB, want at least 300 MiB more", before, after)
	}
	// The container's own cgroup, seen without a cgroup namespace.
	cgroup := func(file string) string {
		return c.run(t, ctx, "exec", ctr, "sh", "-c", "cat /sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)/"+file)
	}
	if got := cgroup("cpu.max"); got != "200000 100000" {
		t.Errorf("container cpu.max = %q, want \"200000 100000\"", got)
	}
	if got := cgroup("memory.max"); got != strconv.Itoa(300<<20) {
		t.Errorf("container memory.max = %q, want %d", got, 300<<20)
	}
	c.run(t, ctx, "stop", "--timeout", "2", ctr)
	c.run(t, ctx, "rm", ctr)
}
