package main

import (
	"context"
	"os"

	"github.com/sccontainers/scc/attest/verifycli"
)

// runAttest is `scc attest verify ...`; package verifycli does the work.
func runAttest(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return verifycli.ErrUsage
	}
	return verifycli.Run(ctx, args[1:], os.Stdout)
}
