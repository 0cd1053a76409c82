package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/sccontainers/scc/attest/verifycli"
	"github.com/sccontainers/scc/shim"
)

// runAttest is `scc attest verify ...`, which package verifycli does,
// and `scc attest vm ...`.
func runAttest(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "vm" {
		return runAttestVM(ctx, args[1:])
	}
	if len(args) == 0 || args[0] != "verify" {
		return verifycli.ErrUsage
	}
	return verifycli.Run(ctx, args[1:], os.Stdout)
}

// runAttestVM is `scc attest vm`: start a VM of a shim configuration as a
// sandbox would start, print its evidence as JSON (shim.VMEvidence), stop
// it.
func runAttestVM(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("attest vm", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "shim configuration file (default: $SCC_CONFIG or "+shim.DefaultConfigPath+")")
	nonce := fs.String("nonce", "", "the verifier's challenge (default: random)")
	initFile := fs.String("init-data", "", "file of init data to bind to the VM first")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := shim.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	var initData []byte
	if *initFile != "" {
		if initData, err = os.ReadFile(*initFile); err != nil {
			return fmt.Errorf("init data: %w", err)
		}
	}
	ev, err := shim.AttestVM(ctx, cfg, *nonce, initData)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(ev)
}
