package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one `scc` subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{
	"attest":            {"verify attestation evidence: scc attest verify --tee snp|tdx|vtpm|sim --evidence FILE [flags]; a VM's evidence: scc attest vm [--config FILE] [--nonce S] [--init-data FILE]", runAttest},
	"bench":             {"measure container start against runc: scc bench [--runs N]", runBench},
	"check":             {"report what this host can run", runCheck},
	"guest":             {"build the guest image, or compute its launch measurements: scc guest build|measure [flags]", runGuest},
	"pool":              {"pre-started VMs: scc pool fill|list|drain [--config FILE]", runPool},
	"snapshotter":       {"serve the containerd snapshotter of confidential runtime handlers, which leaves image layers to the guest: scc snapshotter [--root DIR] [--address SOCKET]", runSnapshotter},
	"snapshot":          {"VM templates: scc snapshot create|list|remove [--config FILE]", runSnapshot},
	"imagesplit":        {"split an image into confidential and shared parts: scc imagesplit --in LAYOUT --out LAYOUT (--confidential-layers 1,2 | --confidential-path /app | --above-base LAYOUT) [--recipient jwe:pub.pem] [--kbs-key kbs:///default/key/NAME --key-out FILE]", runImagesplit},
	"image":             {"write a demo image: scc image busybox -o FILE [--ref NAME]", runImage},
	"containerd-config": {"print the configuration of a private containerd: scc containerd-config DIR", runContainerdConfig},
	"install":           {"install scc and its containerd runtime handler on a node: scc install [--root DIR] [--label-node NODE]", runInstall},
	"uninstall":         {"remove what scc install added: scc uninstall [--root DIR] [--label-node NODE]", runUninstall},
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(os.Stdout)
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		usage(os.Stderr)
		return fmt.Errorf("unknown command %q", args[0])
	}
	return c.run(ctx, args[1:])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: scc COMMAND [flags]\n\ncommands:")
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-18s %s\n", n, commands[n].summary)
	}
}

// errHelp ends a command after -h printed its flags; it is no failure.
var errHelp = errors.New("help shown")

// parseFlags parses a subcommand's flags; after -h, which prints them, it
// returns errHelp so that the command does not go on.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(os.Stderr)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return errHelp
	}
	if err == nil && fs.NArg() > 0 && !strings.HasPrefix(fs.Name(), "containerd-config") {
		return fmt.Errorf("%s: unexpected arguments %v", fs.Name(), fs.Args())
	}
	return err
}
