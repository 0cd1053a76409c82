package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/containerd/log"

	"github.com/sccontainers/scc/snapshotter"
)

// runSnapshotter serves the snapshotter of confidential runtime handlers
// until it is stopped (SIGINT, SIGTERM).
func runSnapshotter(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snapshotter", flag.ContinueOnError)
	root := fs.String("root", snapshotter.DefaultRoot, "directory of the snapshotter's metadata and the containers' empty root directories")
	address := fs.String("address", snapshotter.DefaultAddress, "unix socket to serve containerd's snapshots API on (containerd's proxy_plugins."+snapshotter.Name+".address)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := log.SetLevel(*level); err != nil {
		return fmt.Errorf("snapshotter: %w", err)
	}
	sn, err := snapshotter.New(*root)
	if err != nil {
		return fmt.Errorf("snapshotter: %w", err)
	}
	defer sn.Close()
	ln, err := snapshotter.Listen(*address)
	if err != nil {
		return fmt.Errorf("snapshotter: %w", err)
	}
	return snapshotter.Serve(ctx, sn, ln)
}
