package shim

import (
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// CRI annotations on the containers of a pod.
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	annotationSandboxMemory = "io.kubernetes.cri.sandbox-memory"
	annotationSandboxQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	annotationSandboxPeriod = "io.kubernetes.cri.sandbox-cpu-period"

	containerTypeSandbox   = "sandbox"
	containerTypeContainer = "container"
)

// isPodSandbox reports whether spec is a pod's sandbox (pause) container.
// It is not run in the guest: the VM is the pod, and holds the pod's
// namespaces itself.
func isPodSandbox(spec *specs.Spec) bool {
	return spec.Annotations[annotationContainerType] == containerTypeSandbox
}

// isPodContainer reports whether spec is an application container of a
// CRI pod.
func isPodContainer(spec *specs.Spec) bool {
	return spec.Annotations[annotationContainerType] == containerTypeContainer
}

// podShared are the namespaces every container of a pod shares. In the
// VM of a pod they are the guest's own, so pod containers join them by
// not asking for new ones; the host paths CRI gives (the pause process's
// namespaces, the CNI network namespace) mean nothing in the guest.
var podShared = map[specs.LinuxNamespaceType]bool{
	specs.NetworkNamespace: true,
	specs.IPCNamespace:     true,
	specs.UTSNamespace:     true,
}

// podSpec makes a pod container share the guest's network, IPC and UTS
// namespaces (the pod's). A namespace of the pause process that is joined
// by path, such as a shared PID namespace, becomes the guest's too.
func podSpec(spec *specs.Spec) {
	if spec.Linux == nil {
		return
	}
	var keep []specs.LinuxNamespace
	for _, ns := range spec.Linux.Namespaces {
		if podShared[ns.Type] || ns.Path != "" {
			continue
		}
		keep = append(keep, ns)
	}
	spec.Linux.Namespaces = keep
	// The hostname is the pod's, set on the VM; without a UTS namespace of
	// its own a container cannot set one.
	spec.Hostname = ""
}

// podResources returns the vCPUs and memory a pod's limits add to the VM's
// base size, from the sandbox annotations CRI sets.
func podResources(spec *specs.Spec) (vcpus, memoryMiB int) {
	a := spec.Annotations
	quota, _ := strconv.ParseInt(a[annotationSandboxQuota], 10, 64)
	period, _ := strconv.ParseInt(a[annotationSandboxPeriod], 10, 64)
	mem, _ := strconv.ParseInt(a[annotationSandboxMemory], 10, 64)
	return podLimits(quota, period, mem)
}

// podLimits returns the whole vCPUs of a CPU quota per period and the MiB
// of a memory limit in bytes, rounded up; zero for no limit.
func podLimits(quota, period, memoryBytes int64) (vcpus, memoryMiB int) {
	if quota > 0 && period > 0 {
		vcpus = int((quota + period - 1) / period)
	}
	if memoryBytes > 0 {
		memoryMiB = int((memoryBytes + (1<<20 - 1)) >> 20)
	}
	return vcpus, memoryMiB
}
