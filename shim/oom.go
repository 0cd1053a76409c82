package shim

import (
	"errors"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// oomRetry is how long forwardOOM waits after an unexpected error.
const oomRetry = time.Second

// forwardOOM publishes TaskOOM for every OOM kill the guest reports, so
// that CRI marks the container OOMKilled, until the sandbox's agent
// connection closes. It must be started once per sandbox, with the agent
// ready.
func (s *service) forwardOOM(id string, ag agent.AgentService, vmDone <-chan struct{}) {
	ctx := log.WithLogger(s.ctx, log.G(s.ctx).WithField(logSandbox, id))
	for {
		ev, err := ag.GetOOMEvent(ctx, &agent.GetOOMEventRequest{})
		if err != nil {
			select {
			case <-vmDone:
				return
			default:
			}
			if errors.Is(err, ttrpc.ErrClosed) || errdefs.IsNotImplemented(fromAgent(err)) {
				return
			}
			log.G(ctx).WithError(err).Warn("wait for OOM event")
			time.Sleep(oomRetry)
			continue
		}
		log.G(ctx).WithField(logContainer, ev.ContainerId).Info("OOM kill")
		s.send(&eventstypes.TaskOOM{ContainerID: ev.ContainerId})
	}
}
