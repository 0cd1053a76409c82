package shim

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestPodSpec(t *testing.T) {
	spec := &specs.Spec{
		Hostname: "pod-host",
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace},
			{Type: specs.IPCNamespace, Path: "/proc/42/ns/ipc"},
			{Type: specs.UTSNamespace, Path: "/proc/42/ns/uts"},
			{Type: specs.MountNamespace},
			{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"},
		}},
	}
	podSpec(spec)
	var got []specs.LinuxNamespaceType
	for _, ns := range spec.Linux.Namespaces {
		got = append(got, ns.Type)
	}
	if len(got) != 2 || got[0] != specs.PIDNamespace || got[1] != specs.MountNamespace {
		t.Errorf("namespaces %v, want pid and mount of its own", got)
	}
	if spec.Hostname != "" {
		t.Error("a container without a UTS namespace keeps a hostname")
	}
}

func TestPodResources(t *testing.T) {
	for _, tc := range []struct {
		ann        map[string]string
		cpus, mems int
	}{
		{nil, 0, 0},
		{map[string]string{annotationSandboxQuota: "150000", annotationSandboxPeriod: "100000"}, 2, 0},
		{map[string]string{annotationSandboxMemory: "268435456"}, 0, 256},
		{map[string]string{annotationSandboxMemory: "1"}, 0, 1},
		{map[string]string{annotationSandboxQuota: "-1", annotationSandboxPeriod: "100000"}, 0, 0},
	} {
		c, m := podResources(&specs.Spec{Annotations: tc.ann})
		if c != tc.cpus || m != tc.mems {
			t.Errorf("%v: %d vCPUs %d MiB, want %d %d", tc.ann, c, m, tc.cpus, tc.mems)
		}
	}
}
