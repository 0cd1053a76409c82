package nodeinstall

import (
	"fmt"
	"strings"
)

// shimConfigTemplate is the shim configuration install writes on a node
// that has none. GUEST_DIR is replaced by the guest image's host path.
// The values are the shim's defaults, spelled out so an administrator
// sees what can be changed.
const shimConfigTemplate = `# scc runtime configuration (see docs/install.md and docs/kubernetes.md).
# Written by "scc install"; it replaces this file only while it is
# unchanged, and "scc uninstall" removes it only while it is unchanged.

state_dir = "/run/scc"
guest_dir = GUEST_DIR

# The io.scc.* pod annotations pods may use to change their VM, as regular
# expressions matched against the whole annotation name. None by default.
# enable_annotations = ["io\\.scc\\.vm\\.(vcpus|memory_mib)", "io\\.scc\\.snapshot\\.enabled"]

[vm]
qemu = "qemu-system-x86_64"
firmware = "/usr/share/seabios/bios-256k.bin"
vmgenid = true
accel = "auto"
vcpus = 1
memory_mib = 512
boot_timeout = "60s"
kernel_params = []
log_dir = "/var/log/scc"

[snapshot]
enabled = true
dir = "/var/lib/scc/snapshots"
auto_create = true
`

// shimConfig returns the default shim configuration for a guest image in
// guestDir (a host path).
func shimConfig(guestDir string) ([]byte, error) {
	q, err := tomlString(guestDir)
	if err != nil {
		return nil, fmt.Errorf("guest_dir: %w", err)
	}
	return []byte(strings.Replace(shimConfigTemplate, "GUEST_DIR", q, 1)), nil
}
