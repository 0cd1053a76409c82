package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
)

// RuntimeName is the runtime type containerd knows scc by.
const RuntimeName = "io.containerd.scc.v2"

// Version is the shim's version, set at build time.
var Version = "dev"

// stateFile, in a container's bundle, records the sandbox state directory
// so that `delete` can clean up after a shim that died.
const stateFile = "scc-sandbox.json"

// Manager starts and cleans up shim processes for containerd.
type Manager struct{}

var _ shim.Shim = Manager{}

// Name implements shim.Shim.
func (Manager) Name() string { return RuntimeName }

// Start launches the shim daemon for a container, or returns the address of
// the running shim of its sandbox: all containers of a pod share one shim
// and one VM.
func (Manager) Start(ctx context.Context, params *bootapi.BootstrapParams) (_ *bootapi.BootstrapResult, retErr error) {
	res := &bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc"}
	id := params.GetInstanceID()
	grouping := id
	if spec, err := readSpec("."); err == nil {
		grouping = sandboxID(spec, id)
	}

	socketDir := params.GetSocketDir()
	if socketDir == "" {
		socketDir = filepath.Join(defaults.DefaultStateDir, "s")
	}
	addr, err := shim.CreateSocketAddress(ctx, socketDir, params.GetContainerdGrpcAddress(), grouping, false)
	if err != nil {
		return nil, err
	}
	socket, err := shim.NewSocket(addr)
	if err != nil {
		if !shim.SocketEaddrinuse(err) {
			return nil, fmt.Errorf("create shim socket: %w", err)
		}
		if shim.CanConnect(addr) {
			// The sandbox's shim already runs: the container joins it.
			res.Address = addr
			return res, nil
		}
		if err := shim.RemoveSocket(addr); err != nil {
			return nil, fmt.Errorf("remove stale shim socket: %w", err)
		}
		if socket, err = shim.NewSocket(addr); err != nil {
			return nil, fmt.Errorf("create shim socket: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			socket.Close()
			_ = shim.RemoveSocket(addr)
		}
	}()
	f, err := socket.File()
	if err != nil {
		return nil, err
	}
	defer f.Close()

	cmd, err := daemonCommand(ctx, id, params)
	if err != nil {
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start shim daemon: %w", err)
	}
	go cmd.Wait()
	if err := shim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("adjust shim OOM score: %w", err)
	}
	res.Address = addr
	return res, nil
}

func daemonCommand(ctx context.Context, id string, params *bootapi.BootstrapParams) (*exec.Cmd, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-id", id, "-address", params.GetContainerdGrpcAddress()}
	if params.GetLogLevel() <= bootapi.LogLevel_LOG_LEVEL_DEBUG {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = cwd
	cmd.Env = os.Environ()
	// The runtime options' configuration. Task requests carry it too, but
	// the sandbox API's do not: a pod's VM is started with what the shim
	// was started with.
	var opts runtimeoptions.Options
	found, err := params.FindExtension(&opts)
	if err != nil {
		return nil, fmt.Errorf("runtime options: %w", err)
	}
	if found && opts.ConfigPath != "" {
		cmd.Env = append(cmd.Env, ConfigEnv+"="+opts.ConfigPath)
	}
	// Its own process group keeps the shim alive when containerd's group
	// is signalled, as for every shim.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// Stop cleans up after a shim that is gone: containerd calls it (through
// the `delete` action) with the container's bundle as working directory.
func (Manager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	st := shim.StopStatus{ExitedAt: time.Now(), ExitStatus: exitCodeVMGone}
	cwd, err := os.Getwd()
	if err != nil {
		return st, err
	}
	dir, err := readSandboxState(cwd)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return st, nil
		}
		return st, err
	}
	// containerd runs delete whenever a task's connection closes, which
	// it also does itself once it deleted the task: the shim may well
	// live on with the pod's other containers, and their VM must stay.
	if shimAlive(dir) {
		return st, nil
	}
	if err := cleanupSandboxDir(ctx, dir, id); err != nil {
		log.G(ctx).WithError(err).Warn("clean up sandbox after shim exit")
	}
	return st, nil
}

// Info reports the runtime's name, version and OCI features.
func (Manager) Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error) {
	f, err := typeurl.MarshalAnyToProto(ociFeatures())
	if err != nil {
		return nil, fmt.Errorf("encode features: %w", err)
	}
	return &types.RuntimeInfo{
		Name:     RuntimeName,
		Version:  &types.RuntimeVersion{Version: Version},
		Features: f,
	}, nil
}

type sandboxState struct {
	StateDir string `json:"state_dir"`
}

func writeSandboxState(bundle, dir string) error {
	b, err := json.Marshal(sandboxState{StateDir: dir})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, stateFile), b, 0o600)
}

func readSandboxState(bundle string) (string, error) {
	b, err := os.ReadFile(filepath.Join(bundle, stateFile))
	if err != nil {
		return "", err
	}
	var st sandboxState
	if err := json.Unmarshal(b, &st); err != nil {
		return "", fmt.Errorf("parse %s: %w", stateFile, errdefs.ErrInvalidArgument)
	}
	return st.StateDir, nil
}

// BinaryConfig is how the shim binary runs under containerd's shim
// package. The shim's children are its VMM and helpers, each waited for
// by the code that started it, so neither a reaper (which would take
// their exit statuses) nor a subreaper is wanted: a pooled VM's QEMU,
// left behind by the `scc pool fill` a shim started, must not become that
// shim's child, since another sandbox will own it.
func BinaryConfig(c *shim.Config) {
	c.NoReaper = true
	c.NoSubreaper = true
}
