package shim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/containerd/log"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// portChunk is the most bytes one forwarding request carries.
const portChunk = 32 << 10

// nftTable is the table the shim adds to a pod's network namespace.
const nftTable = "scc"

// portForwarder serves containerd's port forwarding for a pod. containerd
// enters the pod's network namespace on the host and dials
// localhost:<port> there, where runc's pods listen; scc's pods listen on
// the guest's loopback, which no packet from the host reaches. So in that
// namespace a NAT rule redirects every TCP connection to 127.0.0.1 to one
// listener of the shim, which learns the port each was for
// (SO_ORIGINAL_DST) and joins it to that port on the guest's loopback
// through the agent (DialPort).
type portForwarder struct {
	ln    *net.TCPListener
	guest guestPorts
}

// guestPorts joins host connections to ports on the guest's loopback,
// through the agent.
type guestPorts struct {
	agent agent.AgentService
}

// startPortForward sets up port forwarding in the network namespace at
// nsPath, to the guest behind ag, and serves it until close.
func startPortForward(ctx context.Context, nsPath string, ag agent.AgentService) (*portForwarder, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open pod network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	var ln net.Listener
	if err := inNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		return nil, fmt.Errorf("listen in pod network namespace: %w", err)
	}
	f := &portForwarder{ln: ln.(*net.TCPListener), guest: guestPorts{agent: ag}}
	if err := redirectLoopback(ns, uint16(ln.Addr().(*net.TCPAddr).Port)); err != nil {
		ln.Close()
		return nil, err
	}
	go f.serve(ctx)
	return f, nil
}

// close stops accepting connections; those being forwarded end with the
// agent's connection. The NAT rule goes with the namespace.
func (f *portForwarder) close() {
	if f != nil {
		f.ln.Close()
	}
}

// redirectLoopback adds, in namespace ns, a NAT rule sending TCP
// connections to 127.0.0.1 on any port but port to port.
func redirectLoopback(ns netns.NsHandle, port uint16) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: nftTable})
	ch := c.AddChain(&nftables.Chain{
		Name:     "portforward",
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookOutput,
		Priority: nftables.ChainPriorityNATDest,
	})
	p := binaryutil.BigEndian.PutUint16(port)
	// ip daddr 127.0.0.1 tcp dport != port redirect to :port
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: net.IPv4(127, 0, 0, 1).To4()},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: p},
		&expr.Immediate{Register: 1, Data: p},
		&expr.Redir{RegisterProtoMin: 1},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("add port forwarding rule: %w", err)
	}
	return nil
}

func (f *portForwarder) serve(ctx context.Context) {
	for {
		conn, err := f.ln.AcceptTCP()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.G(ctx).WithError(err).Warn("accept port forwarding connection")
			}
			return
		}
		go f.forward(ctx, conn)
	}
}

// forward joins conn to the port it was for on the guest's loopback, until
// both directions ended.
func (f *portForwarder) forward(ctx context.Context, conn *net.TCPConn) {
	defer conn.Close()
	port, err := originalPort(conn)
	if err != nil {
		log.G(ctx).WithError(err).Warn("port forwarding: original port")
		return
	}
	f.guest.join(ctx, conn, port)
}

// join joins conn to port on the guest's loopback, until both directions
// ended. The caller closes conn.
func (g guestPorts) join(ctx context.Context, conn *net.TCPConn, port uint16) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("port", port))
	d, err := g.agent.DialPort(ctx, &agent.DialPortRequest{Port: uint32(port)})
	if err != nil {
		log.G(ctx).WithError(fromAgent(err)).Debug("port forwarding: dial in guest")
		// Reset rather than close: the client sees the refusal.
		conn.SetLinger(0)
		return
	}
	defer func() {
		if _, err := g.agent.ClosePort(context.WithoutCancel(ctx), &agent.ClosePortRequest{Id: d.Id}); err != nil {
			log.G(ctx).WithError(fromAgent(err)).Debug("port forwarding: close in guest")
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.toGuest(ctx, d.Id, conn)
	}()
	g.fromGuest(ctx, d.Id, conn)
	<-done
}

// toGuest copies what the client sends to the guest, then shuts down the
// guest connection's sending side. On failure it closes conn, which ends
// fromGuest too.
func (g guestPorts) toGuest(ctx context.Context, id uint64, conn *net.TCPConn) {
	buf := make([]byte, portChunk)
	for {
		n, rerr := conn.Read(buf)
		if n > 0 {
			if _, err := g.agent.WritePort(ctx, &agent.WritePortRequest{Id: id, Data: buf[:n]}); err != nil {
				conn.Close()
				return
			}
		}
		if rerr != nil {
			if _, err := g.agent.WritePort(ctx, &agent.WritePortRequest{Id: id, CloseWrite: true}); err != nil {
				conn.Close()
			}
			return
		}
	}
}

// fromGuest copies what the guest's peer sends to the client, then shuts
// down conn's sending side. On failure it closes conn, which ends toGuest
// too.
func (g guestPorts) fromGuest(ctx context.Context, id uint64, conn *net.TCPConn) {
	for {
		r, err := g.agent.ReadPort(ctx, &agent.ReadPortRequest{Id: id, Len: portChunk})
		if err != nil {
			conn.Close()
			return
		}
		if len(r.Data) > 0 {
			if _, err := conn.Write(r.Data); err != nil {
				conn.Close()
				return
			}
		}
		if r.Eof {
			conn.CloseWrite()
			return
		}
	}
}

// originalPort is the port a connection redirected by NAT was made to.
func originalPort(conn *net.TCPConn) (uint16, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		port uint16
		gerr error
	)
	if err := rc.Control(func(fd uintptr) {
		// The kernel returns a struct sockaddr_in; IPv6Mreq is the
		// 16-byte buffer x/sys offers for it.
		var addr *unix.IPv6Mreq
		addr, gerr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if gerr == nil {
			port = binary.BigEndian.Uint16(addr.Multiaddr[2:4])
		}
	}); err != nil {
		return 0, err
	}
	if gerr != nil {
		return 0, fmt.Errorf("SO_ORIGINAL_DST: %w", gerr)
	}
	return port, nil
}
