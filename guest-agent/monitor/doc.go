// Package monitor is the guest's trusted monitor: PID 1 of the guest,
// started before the agent and more privileged than it.
//
// It sets the guest up (root switch, mounts, modules), measures what
// booted into a TCG-style event log (vtpm.Log): the kernel's identity,
// the command line, the initramfs and the agent executable, and keeps the
// VM's TPM in step with that log. Then it starts the agent as its only
// child, confined so that neither the agent nor the containers it runs
// can reach the TPM:
//
//   - the agent gets mount, PID and cgroup namespaces of its own: the
//     monitor is not in its PID namespace (no ptrace, no /proc/1), and its
//     cgroup namespace is rooted below the cgroup that holds the device
//     filter, which it can therefore neither see nor detach;
//   - an eBPF device filter on that cgroup (the agent's and every
//     container's ancestor) refuses the TPM's device numbers;
//   - the TPM device nodes are masked in the agent's mount namespace and
//     left with mode 0, and a TPM reached through a virtio-serial port is
//     held open by the monitor (the port takes one opener);
//   - the agent's capability bounding set lacks CAP_SYS_BOOT (kexec),
//     CAP_SYS_MODULE and CAP_SYS_RAWIO, kernel usermode helpers run with
//     no capabilities, and the kernel is locked down (integrity): no
//     /dev/mem, no unsigned modules, no BPF writes to user memory.
//
// The agent asks the monitor, over a unix socket the monitor hands it at
// start (api/monitor/v1), for evidence, to bind the pod's init data and
// to record a restore. docs/monitor.md describes the design and what the
// monitor cannot guarantee without a hardware privilege boundary.
//
// # Initramfs tree digest
//
// EventInitramfs holds a SHA-256 over the regular files and symbolic
// links of the root filesystem as the monitor finds it at boot (the
// initramfs, moved onto a tmpfs), not descending into other mounts, and
// without /init, the executable, which EventAgent measures. In lexical
// order of their paths (relative to "/", without a leading slash), each
// entry contributes
//
//	kind ('f' or 'l') | ' ' | permission bits, octal | ' ' | path | NUL | SHA-256 of the content or link target
//
// so that a host can compute it from the image's cpio archive.
package monitor
