package critest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sccontainers/scc/internal/ctrd"
)

// daemon is a private containerd with the CRI plugin, run in the test's
// network namespace and in an IPC namespace of its own.
//
// ctrd.Start cannot be used as it is: the CRI image service must be told
// where the registry host configuration is (config_path), which ctrd's
// configuration does not set. The rest is ctrd's configuration.
type daemon struct {
	dir    string
	binDir string
	cmd    *exec.Cmd
	done   chan struct{}
}

type daemonOptions struct {
	dir, binDir, shimDir, netns string
	cri                         *ctrd.CRIOptions
	// certsDir holds one directory of hosts.toml per registry host.
	certsDir string
	env      []string
}

func startContainerd(ctx context.Context, o daemonOptions) (_ *daemon, retErr error) {
	if err := os.MkdirAll(o.dir, 0o711); err != nil {
		return nil, err
	}
	cfg, err := ctrd.Config(o.dir, o.cri)
	if err != nil {
		return nil, err
	}
	cfg += fmt.Sprintf("\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = %q\n", o.certsDir)
	// The pods' network namespaces are mounted below containerd's state
	// directory, not in /var/run/netns where other tests' live.
	cfg += "\n[plugins.\"io.containerd.cri.v1.runtime\"]\n  netns_mounts_under_state_dir = true\n"
	// Where the test runs without CAP_SYS_RESOURCE (a container), runc
	// cannot give the pod sandbox its oom_score_adj of -998: containerd
	// then keeps every process's at its own or higher.
	if !hasCap(unix.CAP_SYS_RESOURCE) {
		cfg += "  restrict_oom_score_adj = true\n"
	}
	cfgPath := filepath.Join(o.dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(o.dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// nsenter and unshare exec containerd in place: the process started
	// is containerd, and its IPC namespace (which the host IPC tests see
	// as the node's) dies with it and its shims, shared memory and all.
	cmd := exec.Command("nsenter", "--net="+netnsPath(o.netns), "--",
		"unshare", "--ipc", "--", filepath.Join(o.binDir, "containerd"), "--config", cfgPath)
	cmd.Env = append(append(os.Environ(), "PATH="+o.shimDir+":"+o.binDir+":"+os.Getenv("PATH")), o.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	d := &daemon{dir: o.dir, binDir: o.binDir, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(d.done) }()
	defer func() {
		if retErr != nil {
			d.stop()
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := d.ctr(ctx, "version").Run(); err == nil {
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("containerd exited: see %s", logf.Name())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("containerd did not answer: see %s", logf.Name())
		}
	}
}

func (d *daemon) address() string { return ctrd.Address(d.dir) }

func (d *daemon) endpoint() string { return "unix://" + d.address() }

// ipcNS is containerd's IPC namespace, which critest must share.
func (d *daemon) ipcNS() string { return "/proc/" + strconv.Itoa(d.cmd.Process.Pid) + "/ns/ipc" }

func (d *daemon) ctr(ctx context.Context, args ...string) *exec.Cmd {
	all := append([]string{"--address", d.address(), "--namespace", "k8s.io"}, args...)
	return exec.CommandContext(ctx, filepath.Join(d.binDir, "ctr"), all...)
}

// hasCap tells whether the test process has capability c in its
// effective set.
func hasCap(c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<uint(c)) != 0
		}
	}
	return false
}

// stop stops containerd. Its directory stays, for its log: the caller
// removes it with ctrd.Clean.
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}
