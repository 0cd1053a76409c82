// Command scc-kbs is scc's key broker: it releases secrets (image layer
// keys) to confidential guests whose attestation evidence satisfies its
// policy, speaking the Trustee KBS protocol. See package attest/kbs.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/log"

	"github.com/sccontainers/scc/attest/kbs"
)

func main() {
	// A flag set of our own: go-sev-guest registers flags on the global one.
	fs := flag.NewFlagSet("scc-kbs", flag.ExitOnError)
	var o kbs.RunOptions
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "address to serve on")
	fs.StringVar(&o.DataDir, "data-dir", "/var/lib/scc-kbs", "persistent state: TLS certificate, keys, encrypted resources, policy")
	fs.BoolVar(&o.InsecureHTTP, "insecure-http", false, "serve plain HTTP instead of HTTPS (the broker is then not authenticated)")
	fs.StringVar(&o.AdminKeyPath, "admin-pubkey", "", "Ed25519 public key (PEM) that signs admin bearer tokens; none disables the admin API")
	fs.StringVar(&o.PolicyPath, "policy", "", "policy document (JSON) to load at start")
	fs.StringVar(&o.TDXCollateralDir, "tdx-collateral", "", "directory of Intel PCS collateral (tcb_info.json, qe_identity.json, their issuer chains, optional CRLs) that rates TD platforms; none refuses TDX")
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := kbs.Run(ctx, o); err != nil {
		log.G(ctx).WithError(err).Error("scc-kbs")
		stop()
		os.Exit(1)
	}
}
