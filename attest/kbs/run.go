package kbs

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/containerd/log"

	"github.com/sccontainers/scc/attest/tdx"
)

// RunOptions are scc-kbs's command-line settings.
type RunOptions struct {
	// Listen is the TCP address to serve on, e.g. 127.0.0.1:8080.
	Listen string
	// DataDir is Config.DataDir.
	DataDir string
	// InsecureHTTP serves plain HTTP instead of HTTPS.
	InsecureHTTP bool
	// AdminKeyPath is an Ed25519 public key PEM; empty disables the admin API.
	AdminKeyPath string
	// PolicyPath, if set, is a policy document loaded (and persisted) at
	// start, replacing the stored one.
	PolicyPath string
	// TDXCollateralDir is Config.TDXCollateralDir; it is checked at start.
	TDXCollateralDir string
}

// Run starts a broker as scc-kbs does and serves until ctx is done.
func Run(ctx context.Context, o RunOptions) error {
	cfg := Config{DataDir: o.DataDir, TDXCollateralDir: o.TDXCollateralDir}
	if o.TDXCollateralDir != "" {
		// Refuse to start on collateral that cannot be read, rather than
		// refusing every TD later.
		c, err := tdx.LoadCollateral(o.TDXCollateralDir)
		if err != nil {
			return err
		}
		log.G(ctx).WithFields(log.Fields{"dir": o.TDXCollateralDir, "revocation_lists": c.Revocations()}).Info("kbs: TDX collateral")
	}
	if o.AdminKeyPath != "" {
		key, err := LoadAdminKey(o.AdminKeyPath)
		if err != nil {
			return err
		}
		cfg.AdminKey = key
	}
	srv, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	if o.PolicyPath != "" {
		data, err := os.ReadFile(o.PolicyPath)
		if err != nil {
			return fmt.Errorf("read policy: %w", err)
		}
		p, err := ParsePolicy(data)
		if err != nil {
			return fmt.Errorf("policy %s: %w", o.PolicyPath, err)
		}
		if err := srv.SetPolicy(ctx, p); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return srv.Serve(ctx, ln, o.InsecureHTTP)
}
