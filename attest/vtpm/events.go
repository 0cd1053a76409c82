package vtpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/sccontainers/scc/attest"
)

// PCRs scc's trusted monitor extends, in the SHA-256 bank. They are the
// ones the boot loader and the OS use on a PC (8 to 15), not the
// firmware's (0 to 7), nor IMA's (10), nor the resettable debug and
// application PCRs (16, 23). scc guests boot their kernel directly, not
// as a unified kernel image, so PCR 12 (systemd-stub's kernel parameters)
// is free for the images.
const (
	// PCRBoot holds what booted: the kernel, its command line, the
	// initramfs and the agent (EventKernel to EventAgent, in that order).
	PCRBoot = 8
	// PCRInitData binds the pod's init data (EventInitData), extended
	// after launch: a VM booted ahead of its pod cannot carry the init
	// data in launch-time fields such as SEV-SNP HOST_DATA or TDX
	// MRCONFIGID.
	PCRInitData = 9
	// PCRLifecycle records that the VM was restored from a snapshot
	// (EventRestore) and that it was cleaned after a tenant and reused
	// (EventClean). It is zero in a VM that booted fresh and never served
	// another tenant.
	PCRLifecycle = 11
	// PCRImage records each container image the guest pulled
	// (EventImage), before it asked the key broker for any of its keys.
	// It is zero in a VM that pulled none.
	PCRImage = 12
)

// MonitorPCRs are the PCRs a quote must cover for a verifier to judge a
// guest of scc's monitor: its boot, its init data, its lifecycle and the
// images it pulled.
var MonitorPCRs = []int{PCRBoot, PCRInitData, PCRLifecycle, PCRImage}

// Event types of the monitor's Log. Each event's data says what was
// measured; its digest is EventDigest(type, data).
const (
	// EventKernel identifies the running kernel: its release, version
	// string and GNU build ID, as text.
	EventKernel EventType = 1
	// EventCmdline is the kernel command line.
	EventCmdline EventType = 2
	// EventInitramfs is the SHA-256 tree digest of the initramfs's
	// files (guest-agent/monitor documents its encoding), 32 bytes.
	EventInitramfs EventType = 3
	// EventAgent is the SHA-256 of the monitor and agent executable, 32
	// bytes.
	EventAgent EventType = 4
	// EventInitData is the SHA-256 of the pod's init data, 32 bytes.
	EventInitData EventType = 5
	// EventRestore is a restore from a snapshot (RestoreEvent's
	// encoding).
	EventRestore EventType = 6
	// EventImage is a container image the guest pulled: its digests and
	// whether it was pinned (attest.Image.MarshalEvent's encoding).
	EventImage EventType = 7
	// EventClean is the VM returned to a clean state after a tenant, to
	// serve the next one (CleanEvent's encoding).
	EventClean EventType = 8
)

// RestoreEvent is the data of an EventRestore.
type RestoreEvent struct {
	// Snapshot is the SHA-256 of the snapshot the VM was restored from,
	// as the host names it; all zero when the monitor found its TPM
	// replaced without being told of a restore.
	Snapshot [32]byte
	// Nonce is the host's random value for this restore: no two restores
	// extend the same value, so no two clones share PCR values.
	Nonce [32]byte
}

// MarshalBinary encodes the event as Snapshot || Nonce.
func (r RestoreEvent) MarshalBinary() ([]byte, error) {
	return append(slices.Clone(r.Snapshot[:]), r.Nonce[:]...), nil
}

// UnmarshalBinary decodes MarshalBinary's encoding.
func (r *RestoreEvent) UnmarshalBinary(b []byte) error {
	if len(b) != 64 {
		return fmt.Errorf("%w: restore event of %d bytes, want 64", ErrMalformedLog, len(b))
	}
	copy(r.Snapshot[:], b[:32])
	copy(r.Nonce[:], b[32:])
	return nil
}

// cleanEventSize is the length of a CleanEvent's encoding.
const cleanEventSize = 8 + 32

// CleanEvent is the data of an EventClean: the guest's monitor ended
// every process, mount and file of the tenant before it, zeroed the
// memory they used, checked the guest's integrity and restarted the agent
// with a new key for tenant number Generation (docs/monitor.md).
type CleanEvent struct {
	// Generation counts the cleans of the VM: 1 for the tenant after the
	// first one.
	Generation uint64
	// Nonce is the host's random value for this clean.
	Nonce [32]byte
}

// MarshalBinary encodes the event as Generation (8 bytes, big endian) ||
// Nonce.
func (e CleanEvent) MarshalBinary() ([]byte, error) {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, cleanEventSize), e.Generation)
	return append(b, e.Nonce[:]...), nil
}

// UnmarshalBinary decodes MarshalBinary's encoding.
func (e *CleanEvent) UnmarshalBinary(b []byte) error {
	if len(b) != cleanEventSize {
		return fmt.Errorf("%w: clean event of %d bytes, want %d", ErrMalformedLog, len(b), cleanEventSize)
	}
	e.Generation = binary.BigEndian.Uint64(b[:8])
	copy(e.Nonce[:], b[8:])
	return nil
}

// Origin is how a guest started, as its verified event log says.
type Origin struct {
	// Restores are the restores the VM went through, oldest first; none
	// for a VM that booted fresh. A VM restored from a snapshot of a
	// restored VM has two.
	Restores []RestoreEvent
	// Cleans are the cleans the VM went through between tenants, oldest
	// first: none for a VM that serves its first tenant.
	Cleans []CleanEvent
}

// Fresh reports whether the guest booted and was never restored. A fresh
// guest may have been reused (Generation).
func (o Origin) Fresh() bool { return len(o.Restores) == 0 }

// Generation is the number of tenants the VM served before the current
// one: 0 for a VM that was never reused.
func (o Origin) Generation() uint64 { return uint64(len(o.Cleans)) }

// OriginOf returns how the guest of verified claims started. The
// lifecycle PCR must be quoted, and the log must explain it: only restore
// and clean events, or none and a zero PCR, and clean events must count
// the generations from 1 without a gap. Errors wrap ErrPolicy or
// ErrMalformedLog.
func OriginOf(c *Claims) (Origin, error) {
	v, ok := c.PCRs[PCRLifecycle]
	if !ok {
		return Origin{}, fmt.Errorf("%w: lifecycle pcr %d not quoted: cannot tell a restored guest from a fresh one", ErrPolicy, PCRLifecycle)
	}
	var o Origin
	for _, ev := range c.Events {
		if ev.PCR != PCRLifecycle {
			continue
		}
		switch ev.Type {
		case EventRestore:
			var r RestoreEvent
			if err := r.UnmarshalBinary(ev.Data); err != nil {
				return Origin{}, err
			}
			o.Restores = append(o.Restores, r)
		case EventClean:
			var e CleanEvent
			if err := e.UnmarshalBinary(ev.Data); err != nil {
				return Origin{}, err
			}
			if want := o.Generation() + 1; e.Generation != want {
				return Origin{}, fmt.Errorf("%w: lifecycle pcr %d: clean of generation %d where %d is next", ErrPolicy, PCRLifecycle, e.Generation, want)
			}
			o.Cleans = append(o.Cleans, e)
		default:
			return Origin{}, fmt.Errorf("%w: lifecycle pcr %d has an event of unknown type %d", ErrPolicy, PCRLifecycle, ev.Type)
		}
	}
	if o.Fresh() && o.Generation() == 0 && !bytes.Equal(v, make([]byte, sha256.Size)) {
		return Origin{}, fmt.Errorf("%w: lifecycle pcr %d is %x with no event to explain it", ErrPolicy, PCRLifecycle, v)
	}
	return o, nil
}

// ImagesOf returns the images the guest of verified claims pulled, in
// order. The image PCR must be quoted and its log explain it: only image
// events, or none and a zero PCR. Errors wrap ErrPolicy or
// ErrMalformedLog.
func ImagesOf(c *Claims) ([]attest.Image, error) {
	v, ok := c.PCRs[PCRImage]
	if !ok {
		return nil, fmt.Errorf("%w: image pcr %d not quoted: cannot tell which images the guest runs", ErrPolicy, PCRImage)
	}
	var images []attest.Image
	for _, ev := range c.Events {
		if ev.PCR != PCRImage {
			continue
		}
		if ev.Type != EventImage {
			return nil, fmt.Errorf("%w: image pcr %d has an event of unknown type %d", ErrPolicy, PCRImage, ev.Type)
		}
		img, err := attest.ParseImage(ev.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: image event: %v", ErrMalformedLog, err)
		}
		images = append(images, img)
	}
	if len(images) == 0 && !bytes.Equal(v, make([]byte, sha256.Size)) {
		return nil, fmt.Errorf("%w: image pcr %d is %x with no event to explain it", ErrPolicy, PCRImage, v)
	}
	return images, nil
}

// InitDataPCR is the value PCRInitData holds once a guest bound initData:
// the reference value a policy pins for a workload's init data.
func InitDataPCR(initData []byte) [32]byte {
	d := sha256.Sum256(initData)
	return extend([32]byte{}, EventDigest(EventInitData, d[:]))
}

// EKPublic returns the TPMT_PUBLIC of the TPM's endorsement key, as the
// TCG's default ECC P-256 EK template derives it from the endorsement
// seed: a TPM's identity, different for every TPM.
func EKPublic(tpm transport.TPM) ([]byte, error) {
	ek, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tpm2.ECCEKTemplate),
	}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("create endorsement key: %w", err)
	}
	defer func() {
		_, _ = tpm2.FlushContext{FlushHandle: ek.ObjectHandle}.Execute(tpm)
	}()
	pub, err := ek.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("endorsement key public: %w", err)
	}
	return tpm2.Marshal(pub), nil
}
