package shim

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	agent "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/vmm"
)

// podNetwork connects a VM to the network namespace CNI prepared for its
// pod: for every interface CNI made there, a tap device next to it, with
// tc filters mirroring all traffic between the two. The guest's interface
// takes the pod interface's MAC and addresses, so the pod's peers see the
// same endpoint as with runc.
type podNetwork struct {
	devices []vmm.NetDevice
	config  *agent.ConfigureNetworkRequest
}

// close releases the shim's copies of the tap files. The taps live as long
// as a process (QEMU) holds them.
func (n *podNetwork) close() {
	for _, d := range n.devices {
		d.Tap.Close()
	}
}

// netnsPath returns the network namespace a pod sandbox joins, if any.
func netnsPath(spec *specs.Spec) string {
	if spec.Linux == nil {
		return ""
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// setupPodNetwork builds the taps and mirroring in the namespace at path.
func setupPodNetwork(path string) (*podNetwork, error) {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open pod network namespace %s: %w", path, err)
	}
	defer target.Close()
	var pn *podNetwork
	err = inNetns(target, func() error {
		var err error
		pn, err = mirrorInterfaces()
		return err
	})
	return pn, err
}

// inNetns runs fn on an OS thread in network namespace ns. The thread is
// not returned to Go's pool unless it got back to the shim's namespace.
func inNetns(ns netns.NsHandle, fn func() error) error {
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, oerr := netns.Get()
		if oerr != nil {
			err = oerr
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		if serr := netns.Set(ns); serr != nil {
			err = fmt.Errorf("enter network namespace: %w", serr)
			runtime.UnlockOSThread()
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	<-done
	return err
}

// mirrorInterfaces runs inside the pod's network namespace.
func mirrorInterfaces() (_ *podNetwork, retErr error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list pod interfaces: %w", err)
	}
	pn := &podNetwork{config: &agent.ConfigureNetworkRequest{}}
	defer func() {
		if retErr != nil {
			pn.close()
		}
	}()
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || l.Type() == "tuntap" || len(a.HardwareAddr) != 6 {
			continue
		}
		tap, err := mirror(l, len(pn.devices))
		if err != nil {
			return nil, err
		}
		pn.devices = append(pn.devices, vmm.NetDevice{Tap: tap, MAC: a.HardwareAddr})
		iface := &agent.Interface{Mac: a.HardwareAddr.String(), Name: a.Name, Mtu: uint32(a.MTU)}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", a.Name, err)
		}
		for _, ad := range addrs {
			if ad.IP.IsLinkLocalUnicast() {
				continue // the guest makes its own
			}
			iface.Addresses = append(iface.Addresses, ad.IPNet.String())
		}
		pn.config.Interfaces = append(pn.config.Interfaces, iface)

		routes, err := netlink.RouteList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("routes of %s: %w", a.Name, err)
		}
		for _, r := range routes {
			// Routes of the interface's own subnets come with its
			// addresses in the guest too.
			if r.Protocol == unix.RTPROT_KERNEL || (r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast()) {
				continue
			}
			gr := &agent.Route{Device: a.Name}
			if r.Dst != nil {
				gr.Destination = r.Dst.String()
			}
			if r.Gw != nil {
				gr.Gateway = r.Gw.String()
			}
			pn.config.Routes = append(pn.config.Routes, gr)
		}
	}
	return pn, nil
}

// mirror creates tap <n> next to link and redirects all ingress traffic of
// each to the other.
func mirror(link netlink.Link, n int) (*os.File, error) {
	tap := &netlink.Tuntap{
		LinkAttrs:  netlink.LinkAttrs{Name: "tap" + strconv.Itoa(n) + "_scc", MTU: link.Attrs().MTU},
		Mode:       netlink.TUNTAP_MODE_TAP,
		Flags:      netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_ONE_QUEUE,
		NonPersist: true,
		Queues:     1,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return nil, fmt.Errorf("create tap for %s: %w", link.Attrs().Name, err)
	}
	if len(tap.Fds) != 1 {
		return nil, errors.New("create tap: no file")
	}
	f := tap.Fds[0]
	fail := func(err error) (*os.File, error) {
		f.Close()
		return nil, err
	}
	tl, err := netlink.LinkByName(tap.Name)
	if err != nil {
		return fail(fmt.Errorf("find tap: %w", err))
	}
	if err := netlink.LinkSetUp(tl); err != nil {
		return fail(fmt.Errorf("tap up: %w", err))
	}
	for _, p := range [][2]netlink.Link{{link, tl}, {tl, link}} {
		if err := redirect(p[0], p[1]); err != nil {
			return fail(err)
		}
	}
	return f, nil
}

// redirect sends everything arriving on from out of to.
func redirect(from, to netlink.Link) error {
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: from.Attrs().Index, Parent: netlink.HANDLE_INGRESS}}
	if err := netlink.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("ingress qdisc on %s: %w", from.Attrs().Name, err)
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from.Attrs().Index,
			Parent:    netlink.MakeHandle(0xffff, 0),
			Protocol:  unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{netlink.NewMirredAction(to.Attrs().Index)},
	}
	if err := netlink.FilterAdd(f); err != nil {
		return fmt.Errorf("redirect %s to %s: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}
