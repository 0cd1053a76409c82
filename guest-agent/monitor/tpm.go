package monitor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/sys/unix"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/attest/source"
	"github.com/sccontainers/scc/attest/vtpm"
	"github.com/sccontainers/scc/guest-agent/initsys"
	"github.com/sccontainers/scc/guest-agent/vport"
)

// portWait bounds the wait for the TPM's virtio-serial port; QEMU TCG
// boots slowly, so it is generous.
const portWait = 30 * time.Second

// guestTPM is the TPM the monitor found, and its device node.
type guestTPM struct {
	transport.TPMCloser
	path string
	dev  uint64 // device number of path
}

// openTPM opens the guest's TPM: the virtio-serial port the command line
// names (scc.tpm=<port>), where the VM's swtpm answers TPM commands, else
// a TPM device the kernel drives (/dev/tpmrm0, an SVSM vTPM or a
// tpm-crb device). It returns nil when the guest has none.
func openTPM(ctx context.Context, cmdline string) (*guestTPM, error) {
	if port, ok := initsys.CmdlineValue(cmdline, agentapi.TPMParam); ok {
		return openPortTPM(ctx, port)
	}
	for _, path := range []string{source.TPMRMDev, source.TPMDev} {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		tpm, err := vtpm.OpenDevice(path)
		if err != nil {
			return nil, err
		}
		return newGuestTPM(tpm, path)
	}
	return nil, nil
}

// openPortTPM opens the TPM on the virtio-serial port called port,
// waiting for the port to appear.
func openPortTPM(ctx context.Context, port string) (*guestTPM, error) {
	fctx, cancel := context.WithTimeout(ctx, portWait)
	defer cancel()
	path, err := vport.Find(fctx, vport.SysClassDir, port)
	if err != nil {
		return nil, fmt.Errorf("open tpm: %w", err)
	}
	// One opener at a time: held here, the port is the monitor's.
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open tpm: %w", err)
	}
	return newGuestTPM(vtpm.NewStreamTPM(f), path)
}

func newGuestTPM(tpm transport.TPMCloser, path string) (*guestTPM, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		tpm.Close()
		return nil, fmt.Errorf("open tpm: %w", err)
	}
	return &guestTPM{TPMCloser: tpm, path: path, dev: st.Rdev}, nil
}
