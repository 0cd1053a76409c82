// Package guestagent wires the guest agent together: its confinement, the
// zombie reaper, the connection to the trusted monitor and the ttrpc
// service on the agent's virtio-serial port. The monitor
// (guest-agent/monitor), PID 1 of the guest, starts the agent.
package guestagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"

	monitorapi "github.com/sccontainers/scc/api/monitor/v1"
	"github.com/sccontainers/scc/guest-agent/agent"
	"github.com/sccontainers/scc/guest-agent/initsys"
	"github.com/sccontainers/scc/guest-agent/monitor"
	"github.com/sccontainers/scc/guest-agent/reaper"
	"github.com/sccontainers/scc/guest-agent/vport"
	"github.com/sccontainers/scc/internal/forward"
)

// portWait bounds the wait for the agent's port; QEMU TCG boots slowly, so
// it is generous.
const portWait = 30 * time.Second

// Main runs the agent and does not return; when it fails, the monitor
// powers the guest off.
//
// It must be called from the main goroutine: it keeps the main thread to
// itself, because libcontainer runs goroutines in containers' mount
// namespaces on locked threads that Go discards afterwards, except the
// main thread, which Go can only park. Parked in a container's namespace,
// it would change what /proc/self shows the agent and pin that namespace.
func Main() {
	runtime.LockOSThread()
	ctx := context.Background()
	err := run(ctx)
	if errors.Is(err, errEndedForClean) {
		log.G(ctx).Info("agent ends for a clean")
		os.Exit(0)
	}
	log.G(ctx).WithError(err).Error("agent failed")
	os.Exit(1)
}

// errEndedForClean is the agent's end after the monitor accepted a
// clean.
var errEndedForClean = errors.New("ended for a clean")

// hangupWait bounds how long an agent that accepted a clean waits for
// the host to hang up before it exits anyway.
const hangupWait = 5 * time.Second

func run(ctx context.Context) error {
	// The sealed executable the monitor started the agent from: running
	// it holds it, no container may inherit it.
	unix.Close(monitor.AgentExeFD)
	cmdline, _ := os.ReadFile("/proc/cmdline")
	initsys.ConfigureLogging(string(cmdline))
	if err := confine(string(cmdline)); err != nil {
		return err
	}
	mon, err := dialMonitor(ctx)
	if err != nil {
		return err
	}

	r := reaper.New()
	go func() {
		if err := r.Run(ctx); err != nil {
			log.G(ctx).WithError(err).Error("reaper")
		}
	}()

	noPivot, err := initsys.RootIsInitramfs()
	if err != nil {
		return err
	}
	info, err := mon.Info(ctx, &emptypb.Empty{})
	if err != nil {
		return fmt.Errorf("ask monitor: %w", err)
	}
	findCtx, cancel := context.WithTimeout(ctx, portWait)
	path, err := vport.Find(findCtx, vport.SysClassDir, vport.Name)
	cancel()
	if err != nil {
		return err
	}
	ln := vport.Listen(path)
	ending := make(chan struct{})
	var endOnce sync.Once
	svc := agent.New(agent.Options{
		NoPivotRoot:    noPivot,
		Reaper:         r,
		EvidenceSource: info.GetEvidenceSource(),
		Monitor:        mon,
		MountShared:    initsys.MountShared,
		OpenForward:    openForward,
		EndForClean: func() {
			endOnce.Do(func() {
				close(ending)
				ln.Close()
			})
		},
	})
	srv, err := agent.NewServer(svc)
	if err != nil {
		return err
	}
	log.G(ctx).WithField("port", path).WithField("no_pivot_root", noPivot).WithField("generation", info.GetGeneration()).Info("agent serving")
	err = srv.Serve(ctx, ln)
	select {
	case <-ending:
		// The answer to Clean is on its way: the host hangs up once it
		// has it.
		wctx, cancel := context.WithTimeout(ctx, hangupWait)
		defer cancel()
		if err := ln.WaitIdle(wctx); err != nil {
			log.G(ctx).WithError(err).Warn("host did not hang up after a clean")
		}
		return errEndedForClean
	default:
	}
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// openForward opens the virtio-serial port of the forwarded channel.
func openForward(ctx context.Context) (io.ReadWriteCloser, error) {
	ctx, cancel := context.WithTimeout(ctx, portWait)
	defer cancel()
	path, err := vport.Find(ctx, vport.SysClassDir, forward.PortName)
	if err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
}

// dialMonitor returns a client of the monitor on the connection it handed
// the agent.
func dialMonitor(ctx context.Context) (monitorapi.MonitorService, error) {
	f := os.NewFile(monitor.AgentConnFD, "monitor")
	conn, err := net.FileConn(f)
	f.Close() // FileConn holds a close-on-exec copy, which no container inherits
	if err != nil {
		return nil, fmt.Errorf("connect to monitor: %w", err)
	}
	c := ttrpc.NewClient(conn, ttrpc.WithOnClose(func() {
		log.G(ctx).Error("connection to the monitor closed")
	}))
	return monitorapi.NewMonitorClient(c), nil
}
