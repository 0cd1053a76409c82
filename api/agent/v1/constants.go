package agent

// Names shared by the host and the guest.
const (
	// PortName is the name of the virtio-serial port that carries the
	// agent's ttrpc connection.
	PortName = "io.scc.agent"
	// SharedTag is the virtio-9p mount tag of the sandbox's shared
	// directory.
	SharedTag = "scc"
	// GuestSharedDir is where the agent mounts the shared directory. The
	// host puts container <id>'s rootfs at <GuestSharedDir>/<id>/rootfs.
	GuestSharedDir = "/run/scc/shared"
	// TPMPortName is the virtio-serial port that carries TPM commands
	// between the guest's trusted monitor and the VM's vTPM (swtpm).
	TPMPortName = "io.scc.tpm"
	// TPMParam is the kernel command line parameter that tells the
	// guest its vTPM is the virtio-serial port it names:
	// scc.tpm=io.scc.tpm.
	TPMParam = "scc.tpm"
)
