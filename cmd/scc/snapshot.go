package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/sccontainers/scc/shim"
	"github.com/sccontainers/scc/snapshot"
)

func runSnapshot(ctx context.Context, args []string) error {
	usage := fmt.Errorf("usage: scc snapshot create|list|remove [--config FILE] [KEY]")
	if len(args) == 0 {
		return usage
	}
	fs, cfg, err := parseVMCommand("snapshot", args)
	if err != nil {
		return err
	}
	store := snapshot.Store{Dir: cfg.Snapshot.Dir}
	switch args[0] {
	case "create":
		start := time.Now()
		t, err := shim.CreateTemplate(ctx, cfg)
		if errors.Is(err, snapshot.ErrBusy) {
			fmt.Println("another process is creating this template")
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Printf("template %s in %s (%v), state sha256 %s\n", t.Key, t.Dir, time.Since(start).Round(time.Millisecond), t.Digest)
	case "list":
		ts, err := store.List()
		if err != nil {
			return err
		}
		for _, t := range ts {
			// The digest is what an attestation policy approves.
			fmt.Printf("%s  %s  %s  sha256:%s\n", t.Key, t.Created.Format(time.RFC3339), t.Dir, t.Digest)
		}
	case "remove":
		if fs.NArg() != 1 {
			return usage
		}
		return store.Remove(fs.Arg(0))
	default:
		return usage
	}
	return nil
}

// parseVMCommand parses the flags of `scc NAME VERB ...` (args starting
// at VERB) and loads the configuration they name.
func parseVMCommand(name string, args []string) (*flag.FlagSet, shim.Config, error) {
	fs := flag.NewFlagSet(name+" "+args[0], flag.ContinueOnError)
	load := vmConfigFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return nil, shim.Config{}, err
	}
	cfg, err := load()
	return fs, cfg, err
}

// vmConfigFlags adds --config and the flags with which the shim names the
// VM configuration of a sandbox (pod limits and annotations may change the
// file's); the returned function loads the configuration with them.
func vmConfigFlags(fs *flag.FlagSet) func() (shim.Config, error) {
	cfgPath := fs.String("config", "", "shim configuration file (default: $SCC_CONFIG or "+shim.DefaultConfigPath+")")
	vcpus := fs.Int("vcpus", 0, "vCPUs of the VM (default: the configuration's)")
	memory := fs.Int("memory-mib", 0, "memory of the VM (default: the configuration's)")
	params := fs.String("kernel-params", "", "extra kernel parameters (default: the configuration's)")
	return func() (shim.Config, error) {
		cfg, err := shim.LoadConfig(*cfgPath)
		if err != nil {
			return cfg, err
		}
		if *vcpus > 0 {
			cfg.VM.VCPUs = *vcpus
		}
		if *memory > 0 {
			cfg.VM.MemoryMiB = *memory
		}
		if isSet(fs, "kernel-params") {
			cfg.VM.ExtraArgs = strings.Fields(*params)
		}
		return cfg, nil
	}
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
