package tests

import (
	"context"
	"strings"
	"testing"
	"time"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sccontainers/scc/internal/ctrd"
)

func client(t *testing.T) (*containerd.Client, context.Context) {
	t.Helper()
	c, err := containerd.New(env.ctrd.Address())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, namespaces.WithNamespace(testContext(t), ctrd.Namespace)
}

// TestEvents checks the task events the shim publishes over a container's
// life, in order.
func TestEvents(t *testing.T) {
	requireEnv(t)
	c, ctx := client(t)
	const id = "events"
	evctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evs, errs := c.Subscribe(evctx, `topic~="/tasks/"`)

	startDetached(t, ctx, id, "sleep", "1000")
	if _, stderr, code := ctr(t, ctx, "", "task", "exec", "--exec-id", "ev-exec", id, "true"); code != 0 {
		t.Fatalf("exec: %s", stderr)
	}
	ctr(t, ctx, "", "task", "kill", "-s", "SIGKILL", id)
	waitStatus(t, ctx, id, "STOPPED")
	ctr(t, ctx, "", "task", "delete", id)

	want := []string{"/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit", "/tasks/exit", "/tasks/delete"}
	var got []string
	timeout := time.After(30 * time.Second)
	for len(got) < len(want) {
		select {
		case e := <-evs:
			if strings.Contains(string(e.Event.GetValue()), id) {
				got = append(got, e.Topic)
			}
		case err := <-errs:
			t.Fatal(err)
		case <-timeout:
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events %v, want %v", got, want)
	}
}

// TestStatsAndUpdate reads the guest cgroup figures and changes a limit.
func TestStatsAndUpdate(t *testing.T) {
	requireEnv(t)
	c, ctx := client(t)
	const id = "stats"
	startDetached(t, ctx, id, "sleep", "1000")
	cont, err := c.LoadContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := cont.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	metrics := func() *v2stats.Metrics {
		t.Helper()
		m, err := task.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		v, err := typeurl.UnmarshalAny(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := v.(*v2stats.Metrics)
		if !ok {
			t.Fatalf("metrics are %T, want cgroup v2 metrics", v)
		}
		return s
	}
	m := metrics()
	if m.Memory.GetUsage() == 0 || m.Pids.GetCurrent() < 1 {
		t.Errorf("implausible guest figures: memory %d bytes, %d pids", m.Memory.GetUsage(), m.Pids.GetCurrent())
	}
	limit := int64(64 << 20)
	if err := task.Update(ctx, containerd.WithResources(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})); err != nil {
		t.Fatal(err)
	}
	if got := metrics().Memory.GetUsageLimit(); got != uint64(limit) {
		t.Errorf("memory limit after update %d, want %d", got, limit)
	}
}
