package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/sccontainers/scc/internal/ctrd"
	"github.com/sccontainers/scc/internal/ocilayout"
)

func runImage(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "busybox" {
		return fmt.Errorf("usage: scc image busybox -o FILE [--ref NAME] [--busybox PATH]")
	}
	fs := flag.NewFlagSet("image busybox", flag.ContinueOnError)
	out := fs.String("o", "", "output file (an OCI image archive for `ctr images import`)")
	opts := ocilayout.BusyboxOptions{}
	fs.StringVar(&opts.Ref, "ref", "scc.local/busybox:latest", "image name")
	fs.StringVar(&opts.Busybox, "busybox", "/bin/busybox", "static busybox binary")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("image busybox: -o FILE is required")
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := ocilayout.WriteBusybox(f, opts); err != nil {
		f.Close()
		os.Remove(*out)
		return err
	}
	return f.Close()
}

func runContainerdConfig(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: scc containerd-config DIR")
	}
	cfg, err := ctrd.Config(args[0], nil)
	if err != nil {
		return err
	}
	fmt.Print(cfg)
	return nil
}
