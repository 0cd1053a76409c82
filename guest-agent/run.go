// Package guestagent wires the guest agent together: PID 1 setup, the
// zombie reaper, and the ttrpc service on the agent's virtio-serial port.
package guestagent

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/sccontainers/scc/attest/source"
	"github.com/sccontainers/scc/guest-agent/agent"
	"github.com/sccontainers/scc/guest-agent/initsys"
	"github.com/sccontainers/scc/guest-agent/reaper"
	"github.com/sccontainers/scc/guest-agent/vport"
	"github.com/sccontainers/scc/internal/forward"
)

// Kernel command line parameters the agent reads.
const (
	paramLogLevel = "scc.log"      // logrus level, "info" by default
	paramHostname = "scc.hostname" // guest hostname, defaultHostname by default
)

const (
	defaultHostname = "scc"
	// portWait bounds the wait for the agent's port; QEMU TCG boots
	// slowly, so it is generous.
	portWait = 30 * time.Second
)

// Main runs the agent and does not return. As PID 1 it powers the guest off
// on failure, so the host sees the VM end rather than a kernel panic.
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
	log.G(ctx).WithError(err).Error("agent failed")
	if os.Getpid() == 1 {
		unix.Sync()
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
	os.Exit(1)
}

func run(ctx context.Context) error {
	pid1 := os.Getpid() == 1
	if pid1 && !initsys.Switched() {
		// Returns only on failure; the agent then runs on the initramfs
		// and confines containers with chroot.
		err := initsys.SwitchRoot()
		fmt.Fprintf(os.Stderr, "scc-agent: %v; containers fall back to chroot\n", err)
	}
	if pid1 {
		if err := initsys.Setup(ctx); err != nil {
			return fmt.Errorf("set up guest: %w", err)
		}
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	configureLogging(string(cmdline))

	if pid1 {
		hostname := defaultHostname
		if v, ok := initsys.CmdlineValue(string(cmdline), paramHostname); ok && v != "" {
			hostname = v
		}
		if err := initsys.SetHostname(hostname); err != nil {
			log.G(ctx).WithError(err).Error("set hostname")
		}
		if err := initsys.LoopbackUp(); err != nil {
			log.G(ctx).WithError(err).Error("loopback")
		}
		// Keep going on failure: the host learns more from a Ping and a
		// failing CreateContainer than from a guest that powered off.
		if err := initsys.LoadModules(ctx); err != nil {
			log.G(ctx).WithError(err).Error("load kernel modules")
		}
		if err := initsys.MountConfigfs(); err != nil {
			log.G(ctx).WithError(err).Warn("mount configfs")
		}
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
	opts := agent.Options{NoPivotRoot: noPivot, Reaper: r}
	det := source.Detector{AllowSim: source.SimRequested(string(cmdline))}
	if src, err := det.Detect(ctx); err == nil {
		opts.EvidenceSource = src.Name()
		log.G(ctx).WithField("source", src.String()).Info("attestation evidence source")
	} else {
		log.G(ctx).WithError(err).Info("no attestation evidence source")
	}
	if pid1 {
		opts.MountShared = initsys.MountShared
		opts.OpenForward = openForward
	}
	svc := agent.New(opts)
	srv, err := agent.NewServer(svc)
	if err != nil {
		return err
	}

	findCtx, cancel := context.WithTimeout(ctx, portWait)
	path, err := vport.Find(findCtx, vport.SysClassDir, vport.Name)
	cancel()
	if err != nil {
		return err
	}
	log.G(ctx).WithField("port", path).WithField("no_pivot_root", noPivot).Info("agent serving")
	if err := srv.Serve(ctx, vport.Listen(path)); err != nil {
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

// configureLogging sets the log level from the kernel command line. Logs
// go to stderr, which is the console in the guest.
func configureLogging(cmdline string) {
	logrus.SetOutput(os.Stderr)
	// The console is a terminal, but the host writes it to a file:
	// no colours.
	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: log.RFC3339NanoFixed, DisableColors: true})
	level, ok := initsys.CmdlineValue(cmdline, paramLogLevel)
	if !ok {
		level = "info"
	}
	if err := log.SetLevel(level); err != nil {
		log.L.WithError(err).Warn("bad log level")
	}
}
