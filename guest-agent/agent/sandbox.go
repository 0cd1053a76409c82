package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// ConfigureSandbox sets the pod's hostname and namespaced sysctls on the
// guest: the guest's UTS, IPC and network namespaces are the pod's.
func (s *Service) ConfigureSandbox(ctx context.Context, req *agentapi.ConfigureSandboxRequest) (*emptypb.Empty, error) {
	for name, value := range req.GetSysctls() {
		if !namespacedSysctl(name) || strings.ContainsAny(name, "/\x00") || strings.Contains(name, "..") {
			return nil, fmt.Errorf("sysctl %q is not a pod's to set: %w", name, errdefs.ErrInvalidArgument)
		}
		p := filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
		if err := os.WriteFile(p, []byte(value), 0); err != nil {
			return nil, fmt.Errorf("sysctl %s=%s: %w", name, value, err)
		}
	}
	if h := req.GetHostname(); h != "" {
		if len(h) > 64 {
			return nil, fmt.Errorf("hostname %q too long: %w", h, errdefs.ErrInvalidArgument)
		}
		if err := unix.Sethostname([]byte(h)); err != nil {
			return nil, fmt.Errorf("set hostname: %w", err)
		}
	}
	log.G(ctx).WithField("hostname", req.GetHostname()).WithField("sysctls", len(req.GetSysctls())).Info("sandbox configured")
	return &emptypb.Empty{}, nil
}

// namespacedSysctl reports whether a sysctl belongs to a namespace the pod
// owns (IPC or network), as runc's validation has it.
func namespacedSysctl(name string) bool {
	switch name {
	case "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced":
		return true
	}
	return strings.HasPrefix(name, "fs.mqueue.") || strings.HasPrefix(name, "net.")
}
