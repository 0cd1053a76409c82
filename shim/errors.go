package shim

import (
	"context"
	"time"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
)

// Log field names, set once per request with log.WithLogger.
const (
	logContainer = "container"
	logExec      = "exec"
	logSandbox   = "sandbox"
	logVM        = "vm"
)

// fromAgent turns an agent error received over ttrpc back into the
// containerd errdefs error it was, so callers can match it.
func fromAgent(err error) error {
	return errgrpc.ToNative(err)
}

// UnaryServerInterceptor implements shim.TTRPCServerUnaryOptioner: the one
// place that logs requests, times them and maps errors to gRPC codes.
func (s *service) UnaryServerInterceptor() ttrpc.UnaryServerInterceptor {
	return func(ctx context.Context, um ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (any, error) {
		start := time.Now()
		resp, err := m(ctx, um)
		entry := log.G(ctx).WithField("method", info.FullMethod).WithField("duration", time.Since(start))
		if err != nil {
			entry.WithError(err).Debug("request failed")
			return resp, errgrpc.ToGRPC(err)
		}
		entry.Debug("request")
		return resp, nil
	}
}
