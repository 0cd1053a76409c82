package monitor

import (
	"context"

	"github.com/containerd/log"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// giveLinks moves every network interface of the monitor's network
// namespace but loopback into the network namespace of process pid (the
// agent's), those there now and those that appear later (a pod's
// interfaces are hot-plugged into a running VM), until ctx ends. The
// tenant configures them in its namespace, which takes its addresses,
// routes and firewall rules with it when it ends; the kernel then returns
// the interfaces to the monitor's namespace, and the next agent gets them.
func giveLinks(ctx context.Context, pid int) {
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	defer close(done)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ListExisting: true,
		ErrorCallback: func(err error) {
			if ctx.Err() == nil { // not the subscription's end
				log.G(ctx).WithError(err).Warn("watch network interfaces")
			}
		},
	})
	if err != nil {
		log.G(ctx).WithError(err).Error("watch network interfaces: the agent gets none")
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-updates:
			if !ok {
				return
			}
			attrs := u.Link.Attrs()
			if attrs.Name == "lo" || u.Header.Type == unix.RTM_DELLINK {
				continue
			}
			// A link moved away is reported deleted here; one that
			// moved already fails with ENODEV, which is fine.
			if err := netlink.LinkSetNsPid(u.Link, pid); err != nil {
				log.G(ctx).WithError(err).WithField("interface", attrs.Name).Debug("give interface to agent")
				continue
			}
			log.G(ctx).WithField("interface", attrs.Name).WithField("mac", attrs.HardwareAddr.String()).Info("interface given to agent")
		}
	}
}
