// Command scc-agent is the guest agent: PID 1 of the guest VM, serving the
// agent protocol on a virtio-serial port. Run as "scc-agent init" it is
// libcontainer's container init instead.
package main

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// nsenter's constructor joins the container's namespaces before the
	// Go runtime starts when the binary runs as "init".
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	guestagent "github.com/sccontainers/scc/guest-agent"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // does not return
	}
	guestagent.Main()
}
