// Package vmm describes how scc launches the virtual machine that hosts a
// container or pod, independently of the hypervisor that runs it.
//
// A Config describes one VM; a Driver turns it into a VM; the VM interface is
// the whole lifecycle the shim needs:
//
//	v, err := drv.New(cfg)   // cfg.WithDefaults(), then Validate
//	err = v.Start(ctx)       // the VMM runs and its control socket answers
//	conn := dial(v.AgentAddr())
//	err = v.Pause(ctx); err = v.Resume(ctx)
//	<-v.Done(); v.Err()      // the VMM process exited; why
//	err = v.Stop(ctx)        // graceful quit, then SIGKILL; idempotent
//	os.RemoveAll(cfg.StateDir)
//
// Start returns once the VMM process is up, not once the guest has booted:
// the guest is ready when its agent answers on AgentAddr, which the caller
// waits for (bounded by Config.BootTimeout).
//
// # Lifecycle
//
// A VM moves created -> running <-> paused -> stopped. Start is valid only
// once, from created; Pause only while running; Resume only while paused;
// with a Snapshotter, Save from running or paused (leaving it paused) and
// Restore from created (instead of Start, leaving it paused). Any other
// transition fails with an error wrapping errdefs.ErrFailedPrecondition.
// Stop is valid in every state and is idempotent. Lifecycle operations on
// one VM are serialised: Stop waits for an operation in progress, which
// its own ctx bounds.
//
// When the VMM process exits on its own (guest poweroff, reboot or panic
// with a no-reboot VMM, crash, kill), Done is closed and Err returns an
// *ExitError carrying the tails of the VMM log and of the guest console;
// Stop must still be called to remove the sockets.
//
// # State directory
//
// Every file a VM creates lives in Config.StateDir, which must be unique per
// VM and short enough for unix socket paths (see MaxStateDirLen):
//
//	agent.sock   host end of the agent's virtio-serial port (AgentAddr)
//	console.log  the guest serial console (ConsoleLog)
//	plus driver files (for QEMU: qmp.sock, qemu.pid, qemu.log)
//
// Stop removes the sockets and pid file but keeps the logs for diagnosis;
// removing StateDir itself is the caller's job, after Stop returns.
//
// # Optional capabilities
//
// Capabilities that not every driver has are separate interfaces found by
// type assertion, such as Snapshotter:
//
//	if s, ok := v.(vmm.Snapshotter); ok { err = s.Save(ctx, path) }
//
// A driver may implement an optional interface and still return an error
// wrapping errdefs.ErrNotImplemented for a configuration it cannot handle.
//
// # Accelerator
//
// Accel "auto" picks KVM only when /dev/kvm opens read-write and the CPU
// advertises hardware virtualisation (vmx or svm); otherwise TCG. A
// paravirtual /dev/kvm without vmx/svm (such as PVM) cannot run stock guest
// kernels, so it must not be chosen automatically. DetectAccel reports the
// choice and the reason, for diagnostics.
package vmm
