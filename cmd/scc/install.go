package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sccontainers/scc/internal/nodeinstall"
	"github.com/sccontainers/scc/shim"
)

// installFlags are the flags install and uninstall share.
func installFlags(fs *flag.FlagSet, o *nodeinstall.Options) {
	fs.StringVar(&o.Root, "root", "/", "the host's root directory (/host in the scc-deploy DaemonSet)")
	fs.StringVar(&o.BinDir, "bin-dir", nodeinstall.DefaultBinDir, "host directory for containerd-shim-scc-v2 and scc")
	fs.StringVar(&o.GuestDir, "guest-dir", nodeinstall.DefaultGuestDir, "host directory for the guest image")
	fs.StringVar(&o.ConfigPath, "config", nodeinstall.DefaultConfigPath, "host path of the shim configuration")
	fs.StringVar(&o.ContainerdConfig, "containerd-config", nodeinstall.DefaultContainerdConfig, "host path of containerd's config")
	fs.StringVar(&o.StatePath, "state", nodeinstall.DefaultStatePath, "host path of the record of what install did")
}

// nodeFlags label the Kubernetes node the command runs for.
type nodeFlags struct {
	node      string
	criSocket string
}

func (n *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.node, "label-node", "", "Kubernetes node to label "+nodeinstall.NodeLabel+"=true once containerd serves the scc handler (install) or to unlabel first (uninstall), with the pod's service account")
	fs.StringVar(&n.criSocket, "cri-socket", "/run/containerd/containerd.sock", "host path of containerd's CRI socket, for --label-node")
}

func runInstall(ctx context.Context, args []string) error {
	var o nodeinstall.Options
	var n nodeFlags
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	installFlags(fs, &o)
	n.register(fs)
	fs.StringVar(&o.BinSource, "bin-src", "", "directory holding containerd-shim-scc-v2 and scc to install (default: this scc's directory)")
	fs.StringVar(&o.GuestSource, "guest-src", "", "guest image to install (default: ../guest from --bin-src)")
	fs.IntVar(&o.ContainerdConfigVersion, "containerd-config-version", 0, "version of a containerd config install creates: 2 (default) or 3; an existing config keeps its own")
	fs.StringVar(&o.ConfidentialConfig, "confidential-config", "", "host path of the shim configuration of a confidential runtime handler ([confidential] enabled = true), which must exist: adds the "+nodeinstall.ConfidentialRuntimeName+" handler, scc's snapshotter and its systemd unit")
	fs.StringVar(&o.Sandboxer, "sandboxer", "", "the scc handler's sandbox controller in containerd's CRI: podsandbox (default: a pause container per pod) or "+nodeinstall.SandboxerShim+" (the shim serves containerd's sandbox API; containerd 2.x, config version 3 or 4)")
	if help, err := parseInstallFlags(fs, args); help || err != nil {
		return err
	}
	if o.BinSource == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find this binary: %w", err)
		}
		o.BinSource = filepath.Dir(self)
	}
	if o.GuestSource == "" {
		o.GuestSource = filepath.Join(o.BinSource, "..", "guest")
	}
	rep, err := nodeinstall.Install(ctx, o)
	printReport(rep)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if len(rep.Changed) == 0 {
		fmt.Println("scc is installed: nothing to change")
	}
	if rep.ContainerdChanged && o.ConfidentialConfig != "" {
		fmt.Println(nodeinstall.SnapshotterHint(o.Root))
	}
	if rep.ContainerdChanged {
		fmt.Println(nodeinstall.RestartHint(o.Root))
	}
	if n.node == "" {
		return nil
	}
	sock, err := hostPath(o.Root, n.criSocket)
	if err != nil {
		return err
	}
	api, err := nodeinstall.InClusterAPI("")
	if err != nil {
		return err
	}
	ready, err := nodeinstall.HandlerReady(ctx, sock, nodeinstall.RuntimeName)
	if !ready {
		if err != nil {
			fmt.Println("containerd:", err)
		}
		fmt.Printf("waiting for containerd to serve the %q handler before labelling node %s\n", nodeinstall.RuntimeName, n.node)
		if err := nodeinstall.WaitHandler(ctx, sock, nodeinstall.RuntimeName, 15*time.Second); err != nil {
			return fmt.Errorf("wait for the %s handler: %w", nodeinstall.RuntimeName, err)
		}
	}
	if err := api.LabelNode(ctx, n.node, true); err != nil {
		return err
	}
	fmt.Printf("labelled node %s %s=true\n", n.node, nodeinstall.NodeLabel)
	return nil
}

func runUninstall(ctx context.Context, args []string) error {
	var o nodeinstall.Options
	var n nodeFlags
	fs := flag.NewFlagSet("uninstall", flag.ContinueOnError)
	installFlags(fs, &o)
	n.register(fs)
	if help, err := parseInstallFlags(fs, args); help || err != nil {
		return err
	}
	var labelErr error
	if n.node != "" {
		// First, so the scheduler stops sending scc pods here. A failure
		// does not keep the files: the node is being cleaned up.
		labelErr = unlabel(ctx, n.node)
	}
	drainErr := drainInstalledPool(ctx, o)
	rep, err := nodeinstall.Uninstall(ctx, o)
	printReport(rep)
	labelErr = errors.Join(labelErr, drainErr)
	if err != nil {
		return errors.Join(fmt.Errorf("uninstall: %w", err), labelErr)
	}
	if rep.ContainerdChanged {
		fmt.Println(nodeinstall.RestartHint(o.Root))
	}
	return labelErr
}

// drainInstalledPool stops the pooled VMs of the installed configuration,
// which no shim owns, before their binaries go. Under another root (a
// DaemonSet's /host) the configuration's paths are read below it; the
// VMs' processes are found by pid, which needs the host's PID namespace.
func drainInstalledPool(ctx context.Context, o nodeinstall.Options) error {
	root := o.Root
	if root == "" {
		root = "/"
	}
	path := o.ConfigPath
	if path == "" {
		path = nodeinstall.DefaultConfigPath
	}
	path = filepath.Join(root, path)
	if _, err := os.Stat(path); err != nil {
		return nil // nothing installed, nothing pooled
	}
	cfg, err := shim.LoadConfig(path)
	if err != nil {
		return fmt.Errorf("drain pool: %w", err)
	}
	cfg.StateDir = filepath.Join(root, cfg.StateDir)
	n, err := shim.DrainPool(ctx, cfg)
	if n > 0 {
		fmt.Printf("stopped %d pooled VMs\n", n)
	}
	if err != nil {
		return fmt.Errorf("drain pool: %w", err)
	}
	return nil
}

func unlabel(ctx context.Context, node string) error {
	api, err := nodeinstall.InClusterAPI("")
	if err != nil {
		return err
	}
	if err := api.LabelNode(ctx, node, false); err != nil {
		return err
	}
	fmt.Printf("removed label %s from node %s\n", nodeinstall.NodeLabel, node)
	return nil
}

// parseInstallFlags parses args; help is set when -h was asked for, in
// which case nothing must be installed or removed.
func parseInstallFlags(fs *flag.FlagSet, args []string) (help bool, err error) {
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("%s: unexpected arguments %v", fs.Name(), fs.Args())
	}
	return false, nil
}

// hostPath is p on the host seen from here (under root).
func hostPath(root, p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%q is not an absolute path", p)
	}
	return filepath.Join(root, p), nil
}

func printReport(rep nodeinstall.Report) {
	for _, c := range rep.Changed {
		fmt.Println(c)
	}
	for _, n := range rep.Notes {
		fmt.Println("note:", n)
	}
}
