// Package ctrd runs a private containerd: its root, state, sockets and
// configuration all live under one directory, and it touches no system
// service. The demo, the end-to-end tests and the benchmark use it.
package ctrd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/platforms"
	"golang.org/x/sys/unix"
)

// Namespace is the containerd namespace the private instance is used with.
const Namespace = "scc"

// CRIOptions turn on containerd's CRI plugin, with an "scc" runtime
// handler next to "runc".
type CRIOptions struct {
	// SCCConfig is the scc shim configuration the handler passes.
	SCCConfig string
	// SandboxImage is the pod sandbox (pause) image; it must be imported
	// into the k8s.io namespace.
	SandboxImage string
	// Sandboxer is the "scc" handler's sandbox controller: "" (CRI's
	// default, podsandbox: a pause container stands for the pod) or
	// "shim" (the shim serves containerd's sandbox API; no pause
	// container).
	Sandboxer string
	// GuestPull, when set, adds a runtime handler whose images are left
	// to the guest: its snapshotter is scc's, served on a socket.
	GuestPull *GuestPullHandler
}

// GuestPullHandler is a CRI runtime handler of confidential containers
// with scc's snapshotter.
type GuestPullHandler struct {
	// Name is the handler's name (crictl runp --runtime NAME).
	Name string
	// SCCConfig is its shim configuration, which must make containers
	// confidential.
	SCCConfig string
	// SnapshotterAddress is the socket scc snapshotter serves.
	SnapshotterAddress string
}

// Options describe a private containerd.
type Options struct {
	// CRI, when set, enables the CRI plugin.
	CRI *CRIOptions
	// Dir holds everything: config.toml, root/, state/, the sockets and
	// the log. Keep it short: shim socket paths are derived from it.
	Dir string
	// BinDir holds containerd, ctr and containerd-shim-runc-v2.
	BinDir string
	// ShimDir is put first on containerd's PATH, so that it finds
	// containerd-shim-scc-v2 there.
	ShimDir string
	// NetNS, when set, names a network namespace (ip netns) containerd
	// runs in, so that CNI's bridges and veths stay out of the host's.
	NetNS string
	// Env is added to containerd's environment, which its shims inherit
	// (for example SCC_CONFIG).
	Env []string
}

// Daemon is a running private containerd.
type Daemon struct {
	opts Options
	cmd  *exec.Cmd
	done chan struct{}
}

var configTemplate = template.Must(template.New("config").Parse(`# Private containerd of scc: everything under {{.Dir}}.
version = 3
root = "{{.Dir}}/root"
state = "{{.Dir}}/state"
disabled_plugins = [
  "io.containerd.nri.v1.nri",
{{- if not .CRI}}
  "io.containerd.grpc.v1.cri",
  "io.containerd.cri.v1.images",
  "io.containerd.cri.v1.runtime",
  "io.containerd.podsandbox.controller.v1.podsandbox",
  "io.containerd.sandbox.controller.v1.shim",
{{- end}}
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{{.Dir}}/containerd.sock"

[ttrpc]
  address = "{{.Dir}}/containerd.sock.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{{.Dir}}/opt"
{{- with .CRI}}

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{{.SandboxImage}}"

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "{{$.Dir}}/cni"

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.scc]
  runtime_type = "io.containerd.scc.v2"
  pod_annotations = ["io.scc.*"]
{{- if eq .Sandboxer "shim"}}
  sandboxer = "shim"
  disable_pause_image_pull = true
{{- else if .Sandboxer}}
  sandboxer = "{{.Sandboxer}}"
{{- end}}
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.scc.options]
    ConfigPath = "{{.SCCConfig}}"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
{{- with .GuestPull}}

[proxy_plugins.scc]
  type = "snapshot"
  address = "{{.SnapshotterAddress}}"
  [proxy_plugins.scc.exports]
    enable_remote_snapshot_annotations = "true"

# containerd's CRI pulls through the transfer service, which unpacks
# only into the snapshotters its unpack_config lists; the first entry is
# its default, which a list replaces.
[[plugins."io.containerd.transfer.v1.local".unpack_config]]
  platform = "{{$.Platform}}"
  snapshotter = "overlayfs"
  differ = "walking"

[[plugins."io.containerd.transfer.v1.local".unpack_config]]
  platform = "{{$.Platform}}"
  snapshotter = "scc"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.{{.Name}}]
  runtime_type = "io.containerd.scc.v2"
  snapshotter = "scc"
  pod_annotations = ["io.scc.*"]
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.{{.Name}}.options]
    ConfigPath = "{{.SCCConfig}}"
{{- end}}
{{- end}}
`))

// Config returns the containerd configuration for a private instance in
// dir, with the CRI plugin when cri is not nil.
func Config(dir string, cri *CRIOptions) (string, error) {
	var b bytes.Buffer
	if err := configTemplate.Execute(&b, struct {
		Dir      string
		CRI      *CRIOptions
		Platform string
	}{dir, cri, platforms.DefaultString()}); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Address is the gRPC socket of the instance in dir.
func Address(dir string) string { return filepath.Join(dir, "containerd.sock") }

// Start writes the configuration and starts containerd, returning once it
// answers.
func Start(ctx context.Context, opts Options) (_ *Daemon, retErr error) {
	if !filepath.IsAbs(opts.Dir) {
		return nil, fmt.Errorf("containerd dir %q must be absolute", opts.Dir)
	}
	if err := os.MkdirAll(opts.Dir, 0o711); err != nil {
		return nil, fmt.Errorf("create containerd dir: %w", err)
	}
	cfg, err := Config(opts.Dir, opts.CRI)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(opts.Dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("write containerd config: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(opts.Dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(opts.BinDir, "containerd"), "--config", cfgPath)
	if opts.NetNS != "" {
		// Only the network namespace changes: mounts stay visible.
		cmd = exec.Command("nsenter", "--net=/var/run/netns/"+opts.NetNS, "--", filepath.Join(opts.BinDir, "containerd"), "--config", cfgPath)
	}
	path := opts.BinDir + ":" + os.Getenv("PATH")
	if opts.ShimDir != "" {
		path = opts.ShimDir + ":" + path
	}
	cmd.Env = append(append(os.Environ(), "PATH="+path), opts.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// containerd must not outlive whoever started it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	d := &Daemon{opts: opts, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(d.done)
	}()
	defer func() {
		if retErr != nil {
			d.Stop(context.WithoutCancel(ctx))
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if err := d.Ctr(ctx, "version").Run(); err == nil {
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("containerd exited: see %s", filepath.Join(opts.Dir, "containerd.log"))
		case <-ctx.Done():
			return nil, fmt.Errorf("containerd did not answer: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Address is the gRPC socket of the daemon.
func (d *Daemon) Address() string { return Address(d.opts.Dir) }

// Ctr returns a ctr command talking to the daemon in Namespace.
func (d *Daemon) Ctr(ctx context.Context, args ...string) *exec.Cmd {
	return d.CtrIn(ctx, Namespace, args...)
}

// CtrIn returns a ctr command talking to the daemon in namespace ns (CRI
// uses "k8s.io").
func (d *Daemon) CtrIn(ctx context.Context, ns string, args ...string) *exec.Cmd {
	all := append([]string{"--address", d.Address(), "--namespace", ns}, args...)
	return exec.CommandContext(ctx, filepath.Join(d.opts.BinDir, "ctr"), all...)
}

// Stop stops containerd and removes what it left: mounts below its
// directory and its files.
func (d *Daemon) Stop(ctx context.Context) error {
	if d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	}
	return Clean(d.opts.Dir)
}

// Clean unmounts everything below dir and removes it.
func Clean(dir string) error {
	var errs []error
	for _, m := range mountsBelow(dir) {
		if err := mount.UnmountAll(m, unix.MNT_DETACH); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// mountsBelow lists mount points below dir, deepest first.
func mountsBelow(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var ms []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			ms = append(ms, f[4])
		}
	}
	for i, j := 0, len(ms)-1; i < j; i, j = i+1, j-1 {
		ms[i], ms[j] = ms[j], ms[i]
	}
	return ms
}
