package shim

import (
	"errors"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// criOptions encodes a CRI pod configuration as containerd's CRI passes
// it to a sandboxer (sandbox.WithOptions).
func criOptions(t *testing.T, c *runtime.PodSandboxConfig) *anypb.Any {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(c)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func hostNetworkPod(mappings ...*runtime.PortMapping) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		PortMappings: mappings,
		Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE},
		}},
	}
}

func TestDecodePodConfig(t *testing.T) {
	cri := &runtime.PodSandboxConfig{
		Hostname:    "pod1",
		Annotations: map[string]string{"io.scc.vm.vcpus": "2", "other": "x"},
		Linux: &runtime.LinuxPodSandboxConfig{Resources: &runtime.LinuxContainerResources{
			CpuPeriod: 100000, CpuQuota: 150000, MemoryLimitInBytes: 300<<20 + 1,
		}},
	}
	pc, err := decodePodConfig(criOptions(t, cri), "/run/netns/cni-1", map[string]string{"io.scc.vm.vcpus": "3"})
	if err != nil {
		t.Fatal(err)
	}
	got := pc.vmRequest()
	want := vmRequest{
		// The request's annotations win over the pod's.
		annotations: map[string]string{"io.scc.vm.vcpus": "3", "other": "x"},
		vcpus:       2, memoryMiB: 301,
		netns: "/run/netns/cni-1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("VM request %+v, want %+v", got, want)
	}
	if cri.Annotations["io.scc.vm.vcpus"] != "2" {
		t.Error("decoding changed the pod's own annotations")
	}

	t.Run("no options", func(t *testing.T) {
		pc, err := decodePodConfig(nil, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if r := pc.vmRequest(); r.vcpus != 0 || r.memoryMiB != 0 || len(r.annotations) != 0 {
			t.Errorf("an empty pod asks for %+v", r)
		}
	})
	t.Run("other options", func(t *testing.T) {
		a, err := typeurl.MarshalAnyToProto(&agent.PingRequest{})
		if err != nil {
			t.Fatal(err)
		}
		a.Value = []byte{1}
		if _, err := decodePodConfig(a, "", nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("options of another type: error %v, want invalid argument", err)
		}
	})
}

func TestPodConfigureRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		cri  *runtime.PodSandboxConfig
		want *agent.ConfigureSandboxRequest
	}{
		{"pod network", &runtime.PodSandboxConfig{Hostname: "h", Linux: &runtime.LinuxPodSandboxConfig{Sysctls: map[string]string{"kernel.shm_rmid_forced": "1"}}},
			&agent.ConfigureSandboxRequest{Hostname: "h", Sysctls: map[string]string{
				"kernel.shm_rmid_forced":              "1",
				"net.ipv4.ip_unprivileged_port_start": "0",
				"net.ipv4.ping_group_range":           "0 2147483647",
			}}},
		{"pod's own", &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "1024"}}},
			&agent.ConfigureSandboxRequest{Sysctls: map[string]string{
				"net.ipv4.ip_unprivileged_port_start": "1024",
				"net.ipv4.ping_group_range":           "0 2147483647",
			}}},
		{"host network", hostNetworkPod(), &agent.ConfigureSandboxRequest{Sysctls: map[string]string{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc, err := decodePodConfig(criOptions(t, tc.cri), "", nil)
			if err != nil {
				t.Fatal(err)
			}
			got := pc.configureRequest()
			if got.Hostname != tc.want.Hostname || !reflect.DeepEqual(got.Sysctls, tc.want.Sysctls) {
				t.Errorf("configure %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPodHostPorts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cri     *runtime.PodSandboxConfig
		want    []uint16
		invalid bool
	}{
		{"pod network", &runtime.PodSandboxConfig{PortMappings: []*runtime.PortMapping{{ContainerPort: 80}}}, nil, false},
		{"host network", hostNetworkPod(
			&runtime.PortMapping{ContainerPort: 8080, HostPort: 8080},
			&runtime.PortMapping{ContainerPort: 53, Protocol: runtime.Protocol_UDP},
			&runtime.PortMapping{ContainerPort: 80},
			&runtime.PortMapping{ContainerPort: 8080},
		), []uint16{80, 8080}, false},
		{"no port", hostNetworkPod(&runtime.PortMapping{}), nil, true},
		{"port too big", hostNetworkPod(&runtime.PortMapping{ContainerPort: 70000}), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc, err := decodePodConfig(criOptions(t, tc.cri), "", nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := pc.hostPorts()
			if tc.invalid {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Errorf("error %v, want invalid argument", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("host ports %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}
