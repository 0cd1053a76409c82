// Command containerd-shim-scc-v2 is the containerd shim of scc (runtime
// type io.containerd.scc.v2): it runs each sandbox in its own VM.
package main

import (
	"context"

	"github.com/containerd/containerd/v2/pkg/shim"

	sccshim "github.com/sccontainers/scc/shim"
	_ "github.com/sccontainers/scc/shim/plugin"
)

func main() {
	shim.RunShim(context.Background(), sccshim.Manager{}, sccshim.BinaryConfig)
}
