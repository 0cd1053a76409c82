package shim

import (
	"github.com/opencontainers/runc/libcontainer/capabilities"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// ociFeatures reports what scc supports of the OCI runtime spec, as `runc
// features` does for runc: containerd's CRI reads it from Info, for
// example to allow recursive read-only mounts (the "rro" option). The
// guest agent runs containers with the libcontainer the shim is built
// with, so its tables are the guest's; what the VM boundary takes away is
// left out.
func ociFeatures() *features.Features {
	no, yes := false, true
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		// No Hooks: they name host programs, which the guest cannot
		// run; the shim drops them (guestSpec).
		MountOptions: specconv.KnownMountOptions(),
		Linux: &features.Linux{
			Namespaces:   specconv.KnownNamespaces(),
			Capabilities: capabilities.KnownCapabilities(),
			// The guest mounts cgroup v2 only, and has no systemd.
			Cgroup: &features.Cgroup{V1: &no, V2: &yes, Systemd: &no, SystemdUser: &no},
			// Host security labels mean nothing in the guest; the shim
			// drops them.
			Apparmor: &features.Apparmor{Enabled: &no},
			Selinux:  &features.Selinux{Enabled: &no},
			// Bind mounts reach the guest over virtio-9p, which the guest
			// kernel cannot ID-map.
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &no}},
		},
	}
}
