package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sccontainers/scc/internal/sched"
	"github.com/sccontainers/scc/shim"
)

// fillNice is the nice value of `scc pool fill` and the VMs it starts.
const fillNice = 10

func runPool(ctx context.Context, args []string) error {
	usage := fmt.Errorf("usage: scc pool fill|list|drain [--config FILE] [--vcpus N --memory-mib N --kernel-params S]")
	if len(args) == 0 {
		return usage
	}
	_, cfg, err := parseVMCommand("pool", args)
	if err != nil {
		return err
	}
	switch args[0] {
	case "fill":
		// Filling is background work; the VMs it starts inherit the
		// priority, and get the normal one back when a sandbox takes
		// them.
		if err := sched.SetNice(os.Getpid(), fillNice); err != nil {
			return err
		}
		start := time.Now()
		n, err := shim.FillPool(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Printf("added %d VMs in %v\n", n, time.Since(start).Round(time.Millisecond))
	case "list":
		es, err := shim.ListPool(cfg)
		if err != nil {
			return err
		}
		for _, e := range es {
			state := "ready"
			if !e.Ready {
				state = "starting"
			}
			fmt.Printf("%s  %s  %-8s  %s  %s\n", e.Key, e.ID, state, e.Created.Format(time.RFC3339), e.Dir)
		}
	case "drain":
		n, err := shim.DrainPool(ctx, cfg)
		fmt.Printf("stopped %d pooled VMs\n", n)
		return err
	default:
		return usage
	}
	return nil
}
