package tests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
	t.Cleanup(func() { unix.Unmount(tmpfs, unix.MNT_DETACH) })

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
	c.run(t, ctx, "stop", "--timeout", "2", ctr)
	c.run(t, ctx, "rm", ctr)
}
