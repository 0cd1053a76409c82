package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/log"
	"google.golang.org/grpc"
)

// Default paths of the snapshotter on a node.
const (
	DefaultRoot    = "/var/lib/scc/snapshotter"
	DefaultAddress = "/run/scc/snapshotter.sock"
)

// Listen makes the unix socket address for Serve, replacing a stale one.
// Only root (containerd) may connect to it.
func Listen(address string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(address), 0o711); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if err := os.Remove(address); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("listen: remove stale socket: %w", err)
	}
	ln, err := net.Listen("unix", address)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if err := os.Chmod(address, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// Serve serves sn with containerd's snapshots API on ln until ctx ends;
// it closes ln, which removes its socket.
func Serve(ctx context.Context, sn *Snapshotter, ln net.Listener) error {
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			srv.GracefulStop()
		case <-done:
		}
	}()
	log.G(ctx).WithField("address", ln.Addr().String()).WithField("root", sn.root).Info("scc snapshotter serving")
	err := srv.Serve(ln)
	close(done)
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve snapshotter: %w", err)
	}
	return nil
}
