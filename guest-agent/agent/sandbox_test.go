package agent

import "testing"

func TestNamespacedSysctl(t *testing.T) {
	for name, want := range map[string]bool{
		"kernel.shm_rmid_forced":              true,
		"fs.mqueue.msg_max":                   true,
		"net.ipv4.ip_unprivileged_port_start": true,
		"kernel.sem":                          true,
		"kernel.panic":                        false,
		"vm.overcommit_memory":                false,
		"fs.file-max":                         false,
	} {
		if got := namespacedSysctl(name); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}
