package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/log"

	"github.com/sccontainers/scc/internal/forward"
	"github.com/sccontainers/scc/vmm"
)

// ForwardStatsName is the file in a sandbox's state directory that holds
// the bytes that crossed its forwarded channel, per target (JSON of
// map[string]forward.TargetStats), rewritten after each stream.
const ForwardStatsName = "forward.json"

// serveForward connects to the VM's forwarded channel and serves the
// targets of the configuration on it until the VM goes. A configuration
// without targets leaves the channel unconnected: the guest has nothing
// to reach.
func (sb *sandbox) serveForward(ctx context.Context, c ConfidentialConfig, vc vmm.Config) error {
	targets := c.targets()
	if len(targets) == 0 {
		return nil
	}
	conn, err := net.Dial("unix", vc.ForwardAddr())
	if err != nil {
		return fmt.Errorf("connect forwarded channel: %w", err)
	}
	statsPath := filepath.Join(sb.dir, ForwardStatsName)
	srv := &forward.Server{Targets: targets}
	var mu sync.Mutex
	srv.StreamDone = func(map[string]forward.TargetStats) {
		mu.Lock()
		defer mu.Unlock()
		writeForwardStats(statsPath, srv.Stats())
	}
	// The channel lives as long as the VM, not as the request that
	// started it.
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sb.stopForward = cancel
	go func() {
		if err := srv.Serve(fctx, conn); err != nil {
			log.G(fctx).WithError(err).Warn("forwarded channel")
		}
		log.G(fctx).WithField("targets", srv.Stats()).Debug("forwarded channel closed")
	}()
	return nil
}

func writeForwardStats(path string, s map[string]forward.TargetStats) {
	b, err := json.Marshal(s)
	if err != nil {
		return
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return // the sandbox is going away
	}
	_ = os.Rename(tmp, path)
}
