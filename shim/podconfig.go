package shim

import (
	"fmt"
	"maps"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// podConfig is a pod as containerd's CRI describes it to a sandboxer: the
// CRI pod configuration (CreateSandboxRequest's options) and the network
// namespace CNI prepared. On the classic path the same facts reach the
// shim through the pause container's spec and annotations.
type podConfig struct {
	cri   *runtime.PodSandboxConfig
	netns string
	// annotations are the pod's, with those of the request over them.
	annotations map[string]string
}

// decodePodConfig reads the CRI pod configuration from a sandbox request's
// options. A request without options (a client other than CRI) describes
// an empty pod.
func decodePodConfig(opts *anypb.Any, netns string, annotations map[string]string) (podConfig, error) {
	pc := podConfig{cri: &runtime.PodSandboxConfig{}, netns: netns}
	if opts != nil && len(opts.GetValue()) > 0 {
		if !typeurl.Is(opts, pc.cri) {
			return podConfig{}, fmt.Errorf("sandbox options of type %s, want a CRI pod configuration: %w", opts.GetTypeUrl(), errdefs.ErrInvalidArgument)
		}
		if err := typeurl.UnmarshalTo(opts, pc.cri); err != nil {
			return podConfig{}, fmt.Errorf("decode pod configuration: %v: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	pc.annotations = maps.Clone(pc.cri.GetAnnotations())
	if pc.annotations == nil {
		pc.annotations = map[string]string{}
	}
	maps.Copy(pc.annotations, annotations)
	return pc, nil
}

// vmRequest is the VM the pod asks for: its annotations, what its CPU and
// memory limits add to the base size (as the pause container's sandbox
// annotations say on the classic path), and its network.
func (pc podConfig) vmRequest() vmRequest {
	res := pc.cri.GetLinux().GetResources()
	vcpus, mem := podLimits(res.GetCpuQuota(), res.GetCpuPeriod(), res.GetMemoryLimitInBytes())
	return vmRequest{annotations: pc.annotations, vcpus: vcpus, memoryMiB: mem, netns: pc.netns}
}

// hostNetwork reports whether the pod asked for the node's network.
func (pc podConfig) hostNetwork() bool {
	return pc.cri.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtime.NamespaceMode_NODE
}

// configureRequest is what the guest holds for the pod that its pause
// container would have: hostname and sysctls. For a pod with a network of
// its own it also allows unprivileged ports and ICMP echo sockets, as
// containerd's CRI does for the pause container by default
// (enable_unprivileged_ports, enable_unprivileged_icmp), unless the pod
// sets them.
func (pc podConfig) configureRequest() *agent.ConfigureSandboxRequest {
	sysctls := maps.Clone(pc.cri.GetLinux().GetSysctls())
	if sysctls == nil {
		sysctls = map[string]string{}
	}
	if !pc.hostNetwork() {
		if _, ok := sysctls["net.ipv4.ip_unprivileged_port_start"]; !ok {
			sysctls["net.ipv4.ip_unprivileged_port_start"] = "0"
		}
		if _, ok := sysctls["net.ipv4.ping_group_range"]; !ok {
			sysctls["net.ipv4.ping_group_range"] = "0 2147483647"
		}
	}
	return &agent.ConfigureSandboxRequest{Hostname: pc.cri.GetHostname(), Sysctls: sysctls}
}

// hostPorts are the TCP ports a host-network pod declares (its port
// mappings' container ports, which for such a pod are the node's ports),
// sorted, without duplicates. Other pods publish none: their ports are
// their network namespace's. Port mappings of other protocols are left
// out: port forwarding is TCP only.
func (pc podConfig) hostPorts() ([]uint16, error) {
	if !pc.hostNetwork() {
		return nil, nil
	}
	var ports []uint16
	for _, m := range pc.cri.GetPortMappings() {
		if m.GetProtocol() != runtime.Protocol_TCP {
			continue
		}
		p := m.GetContainerPort()
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("port mapping with container port %d: %w", p, errdefs.ErrInvalidArgument)
		}
		ports = append(ports, uint16(p))
	}
	slices.Sort(ports)
	return slices.Compact(ports), nil
}
