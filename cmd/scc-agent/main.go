// Command scc-agent is the guest's init: run as PID 1 it is the trusted
// monitor, which measures the guest and starts the agent; run as
// "scc-agent agent" it is the agent, serving the agent protocol on a
// virtio-serial port; run as "scc-agent clean" it is the monitor's
// cleaner, which returns the guest to a clean state between tenants; run
// as "scc-agent init" it is libcontainer's container init.
package main

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// nsenter's constructor joins the container's namespaces before the
	// Go runtime starts when the binary runs as "init".
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	guestagent "github.com/sccontainers/scc/guest-agent"
	"github.com/sccontainers/scc/guest-agent/monitor"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "init":
			libcontainer.Init() // does not return
		case monitor.AgentArg:
			guestagent.Main()
		case monitor.CleanArg:
			monitor.CleanMain() // does not return
		}
	}
	monitor.Main()
}
