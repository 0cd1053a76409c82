package agent

import (
	"context"
	"fmt"
	"os"
	"unsafe"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	monitorapi "github.com/sccontainers/scc/api/monitor/v1"
)

// minRestoreEntropy is the least entropy Restored accepts: 256 bits.
const minRestoreEntropy = 32

// Restored reseeds the kernel's random pool with host entropy, sets the
// clock, has the monitor record the restore in the TPM and forgets the
// agent's key: a VM restored from a snapshot otherwise shares all of them
// with every other VM restored from it.
func (s *Service) Restored(ctx context.Context, req *agentapi.RestoredRequest) (*emptypb.Empty, error) {
	if len(req.GetEntropy()) < minRestoreEntropy {
		return nil, fmt.Errorf("restored: %d bytes of entropy, want at least %d: %w", len(req.GetEntropy()), minRestoreEntropy, errdefs.ErrInvalidArgument)
	}
	if req.GetTime() == nil {
		return nil, fmt.Errorf("restored: no time: %w", errdefs.ErrInvalidArgument)
	}
	if err := addEntropy(req.GetEntropy()); err != nil {
		return nil, fmt.Errorf("restored: %w", err)
	}
	tv := unix.NsecToTimeval(req.GetTime().AsTime().UnixNano())
	if err := unix.Settimeofday(&tv); err != nil {
		return nil, fmt.Errorf("restored: set clock: %w", err)
	}
	if s.opts.Monitor != nil {
		_, err := s.opts.Monitor.Restored(ctx, &monitorapi.RestoredRequest{SnapshotDigest: req.GetSnapshotDigest(), Nonce: req.GetNonce()})
		if err != nil {
			return nil, fmt.Errorf("restored: %w", errgrpc.ToNative(err))
		}
	}
	s.forgetKey()
	log.G(ctx).WithField("entropy_bytes", len(req.GetEntropy())).Info("reseeded after restore")
	return &emptypb.Empty{}, nil
}

// addEntropy credits data to the kernel's random pool (RNDADDENTROPY) and
// reseeds the CRNG from it (RNDRESEEDCRNG). Crediting alone does not
// reseed a CRNG that is already initialised: until its next scheduled
// reseed, VMs restored from one template would draw the same bytes.
func addEntropy(data []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/urandom: %w", err)
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	buf := make([]byte, 8+len(data))
	*(*int32)(unsafe.Pointer(&buf[0])) = int32(len(data) * 8)
	*(*int32)(unsafe.Pointer(&buf[4])) = int32(len(data))
	copy(buf[8:], data)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", errno)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); errno != 0 {
		return fmt.Errorf("RNDRESEEDCRNG: %w", errno)
	}
	return nil
}
