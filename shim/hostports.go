package shim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/containerd/log"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// hostPortPublisher serves a host-network pod's declared ports on the
// node's loopback. Such a pod cannot share the node's network stack: it
// runs in its VM's. What a host-network pod's ports promise, and what
// containerd's port forwarding of such a pod dials (localhost:<port> in
// its own network namespace, the node's), is reached instead by a
// listener of the shim on 127.0.0.1:<port>, joined to the port on the
// guest's loopback through the agent, as for the port forwarding of other
// pods.
type hostPortPublisher struct {
	lns   []*net.TCPListener
	guest guestPorts
}

// publishHostPorts listens on 127.0.0.1 of the shim's network namespace
// (containerd's) on every port, and serves them until close. A port that
// is taken fails it all: the pod's port would not be what it declared.
func publishHostPorts(ctx context.Context, ports []uint16, ag agent.AgentService) (_ *hostPortPublisher, retErr error) {
	h := &hostPortPublisher{guest: guestPorts{agent: ag}}
	defer func() {
		if retErr != nil {
			h.close()
		}
	}()
	for _, p := range ports {
		ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p))))
		if err != nil {
			return nil, fmt.Errorf("publish port %d of the host-network pod on the node's loopback: %w", p, err)
		}
		h.lns = append(h.lns, ln.(*net.TCPListener))
	}
	for i, ln := range h.lns {
		go h.serve(ctx, ln, ports[i])
	}
	return h, nil
}

func (h *hostPortPublisher) serve(ctx context.Context, ln *net.TCPListener, port uint16) {
	for {
		conn, err := ln.AcceptTCP()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.G(ctx).WithError(err).WithField("port", port).Warn("accept on a published host port")
			}
			return
		}
		go func() {
			defer conn.Close()
			h.guest.join(ctx, conn, port)
		}()
	}
}

// close stops listening; connections being served end with the agent's
// connection.
func (h *hostPortPublisher) close() {
	if h == nil {
		return
	}
	for _, ln := range h.lns {
		ln.Close()
	}
}
