package pull

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/go-dmverity/pkg/dm"
	"github.com/containerd/go-dmverity/pkg/verity"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/sccontainers/scc/imagesplit"
)

// ErrVerity is a layer disk whose content dm-verity refuses: the host
// attached something other than what the manifest's root hash describes.
var ErrVerity = errors.New("layer disk fails dm-verity")

// SysBlockDir lists the guest's block devices.
const SysBlockDir = "/sys/block"

// diskWait bounds the wait for a hotplugged disk to appear.
const diskWait = 30 * time.Second

// integrity is a layer's integrity descriptor, from the manifest the guest
// pulled and checked itself: the only thing about a layer disk it trusts.
type integrity struct {
	erofsDigest string // sha256:...
	erofsSize   int64
	rootHash    []byte
	salt        []byte
}

// layerIntegrity reads the descriptor imagesplit put on a non-confidential
// layer, if it has one.
func layerIntegrity(desc v1.Descriptor) (integrity, bool, error) {
	a := desc.Annotations
	if a[imagesplit.AnnotationVerityRootHash] == "" || a[imagesplit.AnnotationErofsDigest] == "" {
		return integrity{}, false, nil
	}
	var in integrity
	var err error
	in.erofsDigest = a[imagesplit.AnnotationErofsDigest]
	if in.rootHash, err = hex.DecodeString(a[imagesplit.AnnotationVerityRootHash]); err != nil || len(in.rootHash) != 32 {
		return integrity{}, false, fmt.Errorf("%s: not a sha256 root hash: %w", imagesplit.AnnotationVerityRootHash, errdefs.ErrInvalidArgument)
	}
	if in.salt, err = hex.DecodeString(a[imagesplit.AnnotationVeritySalt]); err != nil || len(in.salt) > verity.MaxSaltSize {
		return integrity{}, false, fmt.Errorf("%s: bad salt: %w", imagesplit.AnnotationVeritySalt, errdefs.ErrInvalidArgument)
	}
	in.erofsSize, err = strconv.ParseInt(a[imagesplit.AnnotationErofsSize], 10, 64)
	if err != nil || in.erofsSize <= 0 || in.erofsSize%verity4K != 0 {
		return integrity{}, false, fmt.Errorf("%s: %q is not a positive multiple of %d: %w", imagesplit.AnnotationErofsSize, a[imagesplit.AnnotationErofsSize], verity4K, errdefs.ErrInvalidArgument)
	}
	return in, true, nil
}

// verity4K is the data and hash block size imagesplit uses.
const verity4K = 4096

// mountDisk opens the disk dev, which holds the layer's erofs image
// followed by its dm-verity tree (superblock block, then the tree), under
// dm-verity with every parameter from the manifest, reads it whole so
// that any block the host changed fails now rather than in the container,
// and mounts it read-only at dir, under the dm device name.
func mountDisk(ctx context.Context, dev, name string, in integrity, dir string) (retErr error) {
	mapped, err := openVerity(name, dev, in)
	if err != nil {
		return fmt.Errorf("open %s under dm-verity: %w", dev, err)
	}
	defer func() {
		if retErr != nil {
			closeDM(name)
		}
	}()
	if err := readAll(ctx, mapped); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrVerity, dev, err)
	}
	if err := unix.Mount(mapped, dir, "erofs", unix.MS_RDONLY|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount erofs layer %s: %w", mapped, err)
	}
	return nil
}

// openVerity maps dev under a dm-verity target called name and returns
// its device node. The guest has no udev to make /dev/mapper/NAME: the
// node is devtmpfs's /dev/dm-MINOR.
func openVerity(name, dev string, in integrity) (_ string, retErr error) {
	params, err := dm.BuildTargetParams(dm.OpenArgs{
		Version:       1,
		DataDevice:    dev,
		HashDevice:    dev,
		DataBlockSize: verity4K,
		HashBlockSize: verity4K,
		DataBlocks:    uint64(in.erofsSize / verity4K),
		HashName:      "sha256",
		RootDigest:    in.rootHash,
		Salt:          in.salt,
		// The tree follows the erofs image and the superblock's block.
		HashStartBytes: uint64(in.erofsSize) + verity4K,
	})
	if err != nil {
		return "", err
	}
	c, err := dm.Open()
	if err != nil {
		return "", err
	}
	defer c.Close()
	devno, err := c.CreateDevice(name)
	if err != nil {
		return "", err
	}
	defer func() {
		if retErr != nil {
			_ = c.RemoveDevice(name)
		}
	}()
	if err := c.LoadTable(name, []dm.Target{{Length: uint64(in.erofsSize) / 512, Type: "verity", Params: params}}); err != nil {
		return "", err
	}
	if err := c.SuspendDevice(name, false); err != nil {
		return "", err
	}
	node := fmt.Sprintf("/dev/dm-%d", unix.Minor(devno))
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(node); err == nil {
			return node, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "", fmt.Errorf("dm device %s has no node %s", name, node)
}

// readAll reads the verified device to its end: dm-verity checks each
// block against the root hash as it is read.
func readAll(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := f.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// closeDM removes a dm device, waiting out a short busy spell after its
// file system was unmounted.
func closeDM(name string) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = verity.Close(name); err == nil || !errors.Is(err, unix.EBUSY) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// findDisk returns the device node of the virtio disk whose serial is
// serial, waiting for a hotplugged one to appear.
func findDisk(ctx context.Context, sysBlock, serial string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, diskWait)
	defer cancel()
	for {
		entries, _ := os.ReadDir(sysBlock)
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "serial"))
			if err == nil && strings.TrimSpace(string(b)) == serial {
				return filepath.Join("/dev", e.Name()), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("layer disk %s did not appear: %w", serial, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
