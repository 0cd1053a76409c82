package agent

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/vishvananda/netlink"
	"google.golang.org/protobuf/types/known/emptypb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// linkWait bounds the wait for a virtio-net interface to appear: the
// driver probes devices asynchronously after its module loads.
const linkWait = 10 * time.Second

// ConfigureNetwork sets up the pod's interfaces and routes in the guest's
// network namespace, which the pod's containers share.
func (s *Service) ConfigureNetwork(ctx context.Context, req *agentapi.ConfigureNetworkRequest) (*emptypb.Empty, error) {
	for _, iface := range req.GetInterfaces() {
		if err := configureInterface(ctx, iface); err != nil {
			return nil, err
		}
	}
	for _, r := range req.GetRoutes() {
		if err := addRoute(r); err != nil {
			return nil, err
		}
	}
	return &emptypb.Empty{}, nil
}

func configureInterface(ctx context.Context, iface *agentapi.Interface) error {
	mac, err := net.ParseMAC(iface.GetMac())
	if err != nil {
		return fmt.Errorf("interface %q: %v: %w", iface.GetMac(), err, errdefs.ErrInvalidArgument)
	}
	if iface.GetName() == "" || strings.ContainsAny(iface.GetName(), "/ \x00") || len(iface.GetName()) > 15 {
		return fmt.Errorf("interface name %q: %w", iface.GetName(), errdefs.ErrInvalidArgument)
	}
	var addrs []*netlink.Addr
	for _, a := range iface.GetAddresses() {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("address %q: %v: %w", a, err, errdefs.ErrInvalidArgument)
		}
		addrs = append(addrs, addr)
	}
	link, err := linkByMAC(ctx, mac)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetDown(link); err != nil {
		return fmt.Errorf("interface %s: down: %w", mac, err)
	}
	if link.Attrs().Name != iface.GetName() {
		if err := netlink.LinkSetName(link, iface.GetName()); err != nil {
			return fmt.Errorf("interface %s: rename to %s: %w", mac, iface.GetName(), err)
		}
	}
	if mtu := int(iface.GetMtu()); mtu > 0 {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("interface %s: mtu %d: %w", iface.GetName(), mtu, err)
		}
	}
	for _, a := range addrs {
		if err := netlink.AddrReplace(link, a); err != nil {
			return fmt.Errorf("interface %s: address %s: %w", iface.GetName(), a, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("interface %s: up: %w", iface.GetName(), err)
	}
	log.G(ctx).WithField("interface", iface.GetName()).WithField("addresses", iface.GetAddresses()).Info("interface configured")
	return nil
}

func linkByMAC(ctx context.Context, mac net.HardwareAddr) (netlink.Link, error) {
	deadline := time.Now().Add(linkWait)
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("list interfaces: %w", err)
		}
		for _, l := range links {
			if l.Attrs().HardwareAddr.String() == mac.String() {
				return l, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no interface with MAC %s: %w", mac, errdefs.ErrNotFound)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func addRoute(r *agentapi.Route) error {
	link, err := netlink.LinkByName(r.GetDevice())
	if err != nil {
		return fmt.Errorf("route via %q: %v: %w", r.GetDevice(), err, errdefs.ErrInvalidArgument)
	}
	route := &netlink.Route{LinkIndex: link.Attrs().Index}
	if d := r.GetDestination(); d != "" {
		_, dst, err := net.ParseCIDR(d)
		if err != nil {
			return fmt.Errorf("route destination %q: %v: %w", d, err, errdefs.ErrInvalidArgument)
		}
		route.Dst = dst
	}
	if g := r.GetGateway(); g != "" {
		if route.Gw = net.ParseIP(g); route.Gw == nil {
			return fmt.Errorf("route gateway %q: %w", g, errdefs.ErrInvalidArgument)
		}
	} else {
		route.Scope = netlink.SCOPE_LINK
	}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("add route %s via %s: %w", r.GetDestination(), r.GetGateway(), err)
	}
	return nil
}
