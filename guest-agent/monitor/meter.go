package monitor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/containerd/log"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/vtpm"
)

// errNoTPM means the guest has no TPM to extend or quote.
var errNoTPM = errors.New("the guest has no TPM")

// meter keeps the event log and the TPM in step. Every event goes into
// the log and, once there is a TPM, into its PCR, under one lock; a quote
// and the log it ships with are taken under the same lock, so they agree.
//
// The log, kept in the monitor's memory, is the reference: a VM restored
// from a snapshot keeps its log but gets a new, empty TPM of its own, and
// sync replays the log into it.
type meter struct {
	mu  sync.Mutex
	log vtpm.Log
	tpm transport.TPM // nil until attach; guarded by mu
	ek  []byte        // the TPM's EK public, cached; guarded by mu
	// initData is set once the current tenant's init data is bound;
	// guarded by mu.
	initData bool
	// generation counts the cleans: the tenants served before the
	// current one; guarded by mu.
	generation uint64
}

// measure records an event and extends it into the TPM, if there is one.
func (m *meter) measure(pcr int, typ vtpm.EventType, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.measureLocked(pcr, typ, data)
}

func (m *meter) measureLocked(pcr int, typ vtpm.EventType, data []byte) error {
	d, err := m.log.Append(pcr, typ, data)
	if err != nil {
		return fmt.Errorf("measure: %w", err)
	}
	if m.tpm == nil {
		return nil
	}
	if err := vtpm.ExtendPCR(m.tpm, pcr, d); err != nil {
		// The log has an event the TPM may lack: the next sync finds
		// out and refuses to quote.
		return fmt.Errorf("measure: %w", err)
	}
	return nil
}

// attach adopts the guest's TPM and brings it up to the log.
func (m *meter) attach(ctx context.Context, tpm transport.TPM) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tpm = tpm
	replayed, err := m.syncLocked()
	if err != nil {
		return err
	}
	log.G(ctx).WithField("replayed", replayed).Info("tpm attached")
	return nil
}

// hasTPM reports whether the meter has a TPM.
func (m *meter) hasTPM() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tpm != nil
}

// syncLocked makes the TPM's PCRs hold what the log replays to. A TPM
// that holds them already is left alone; an empty one (every PCR of the
// log zero: a new TPM, as a restored VM gets) has the log replayed into
// it. Any other state is an error: the TPM holds measurements the log
// does not explain, and quoting it would show them as the monitor's.
func (m *meter) syncLocked() (replayed bool, err error) {
	want := map[int][32]byte{}
	for _, p := range vtpm.MonitorPCRs {
		want[p] = [32]byte{}
	}
	maps.Copy(want, m.log.Replay())
	pcrs := slices.Sorted(maps.Keys(want))
	got, err := vtpm.ReadPCRs(m.tpm, pcrs)
	if err != nil {
		return false, fmt.Errorf("sync tpm: %w", err)
	}
	if matches(got, want) {
		return false, nil
	}
	for _, p := range pcrs {
		if !bytes.Equal(got[p], make([]byte, 32)) {
			return false, fmt.Errorf("sync tpm: pcr %d is %x, neither empty nor what the event log replays to (%x)", p, got[p], want[p])
		}
	}
	for _, ev := range m.log.Events() {
		if err := vtpm.ExtendPCR(m.tpm, ev.PCR, ev.Digest); err != nil {
			return true, fmt.Errorf("sync tpm: replay: %w", err)
		}
	}
	if got, err = vtpm.ReadPCRs(m.tpm, pcrs); err != nil {
		return true, fmt.Errorf("sync tpm: %w", err)
	}
	if !matches(got, want) {
		return true, errors.New("sync tpm: PCRs differ from the event log after replaying it")
	}
	m.ek = nil // a new TPM: a new identity
	return true, nil
}

func matches(got map[int][]byte, want map[int][32]byte) bool {
	for p, w := range want {
		if !bytes.Equal(got[p], w[:]) {
			return false
		}
	}
	return true
}

// restored brings a new TPM up to the log and records the restore.
func (m *meter) restored(ctx context.Context, r vtpm.RestoreEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tpm != nil {
		replayed, err := m.syncLocked()
		if err != nil {
			return err
		}
		log.G(ctx).WithField("replayed", replayed).Info("tpm synced after restore")
	}
	data, _ := r.MarshalBinary()
	return m.measureLocked(vtpm.PCRLifecycle, vtpm.EventRestore, data)
}

// bindInitData extends the init data's digest, once.
func (m *meter) bindInitData(digest [32]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tpm == nil {
		return errNoTPM
	}
	if m.initData {
		return errInitDataBound
	}
	if err := m.measureLocked(vtpm.PCRInitData, vtpm.EventInitData, digest[:]); err != nil {
		return err
	}
	m.initData = true
	return nil
}

var errInitDataBound = errors.New("init data is bound already")

// bindImage extends a pulled image into the image PCR. Without a TPM
// there is nothing to extend it into (the guest's evidence comes from
// elsewhere, which binds its images itself).
func (m *meter) bindImage(img attest.Image) error {
	data, err := img.MarshalEvent()
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tpm == nil {
		return errNoTPM
	}
	return m.measureLocked(vtpm.PCRImage, vtpm.EventImage, data)
}

// evidence quotes the monitor's PCRs with the qualifying data of
// reportData and attaches the log; it also returns the TPM's EK public.
//
// A TPM found empty here was replaced without the monitor being told of
// a restore: the monitor replays its log and records a restore from an
// unknown snapshot (zero digest), which no policy approves, rather than
// let the VM pass for one that booted fresh.
func (m *meter) evidence(ctx context.Context, reportData [64]byte) (*vtpm.Evidence, []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tpm == nil {
		return nil, nil, errNoTPM
	}
	replayed, err := m.syncLocked()
	if err != nil {
		return nil, nil, err
	}
	if replayed {
		log.G(ctx).Warn("tpm replaced without a restore notice: recording a restore from an unknown snapshot")
		data, _ := vtpm.RestoreEvent{}.MarshalBinary()
		if err := m.measureLocked(vtpm.PCRLifecycle, vtpm.EventRestore, data); err != nil {
			return nil, nil, err
		}
	}
	ev, err := vtpm.GetEvidence(ctx, m.tpm, vtpm.QualifyingData(reportData), vtpm.MonitorPCRs, m.log.MarshalBinary)
	if err != nil {
		return nil, nil, err
	}
	if m.ek == nil {
		if m.ek, err = vtpm.EKPublic(m.tpm); err != nil {
			return nil, nil, err
		}
	}
	return ev, bytes.Clone(m.ek), nil
}

// errTPMNotNew means the TPM a clean was given holds measurements: the
// host did not give the next tenant a TPM of its own.
var errTPMNotNew = errors.New("the TPM is not new")

// cleaned records that the guest was cleaned for its next tenant and
// returns the new generation. The log keeps the boot and the lifecycle
// and loses the init data of the tenant that ended: the next tenant binds
// its own, and neither its verifier nor it learns the last one's. tpm,
// the next tenant's TPM, must be new (every monitor PCR zero, the host
// started a new vTPM): the log is replayed into it and the clean event
// extended. Without a TPM (tpm nil, and none attached) the log alone
// records it.
func (m *meter) cleaned(ctx context.Context, tpm transport.TPM, nonce [32]byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if (tpm == nil) != (m.tpm == nil) {
		return 0, fmt.Errorf("clean: the guest had a TPM and has none now, or the reverse")
	}
	m.log.Filter(func(ev vtpm.Event) bool { return ev.PCR != vtpm.PCRInitData })
	m.initData = false
	if tpm != nil {
		got, err := vtpm.ReadPCRs(tpm, vtpm.MonitorPCRs)
		if err != nil {
			return 0, fmt.Errorf("clean: %w", err)
		}
		for _, p := range vtpm.MonitorPCRs {
			if !bytes.Equal(got[p], make([]byte, 32)) {
				return 0, fmt.Errorf("clean: %w: pcr %d is %x", errTPMNotNew, p, got[p])
			}
		}
		m.tpm = tpm
		if _, err := m.syncLocked(); err != nil {
			return 0, fmt.Errorf("clean: %w", err)
		}
	}
	gen := m.generation + 1
	data, _ := vtpm.CleanEvent{Generation: gen, Nonce: nonce}.MarshalBinary()
	if err := m.measureLocked(vtpm.PCRLifecycle, vtpm.EventClean, data); err != nil {
		return 0, err
	}
	m.generation = gen
	log.G(ctx).WithField("generation", gen).WithField("events", len(m.log.Events())).Info("clean recorded")
	return gen, nil
}

// currentGeneration is the number of cleans so far.
func (m *meter) currentGeneration() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.generation
}

// bootDigest returns the data of the first boot event of type typ (the
// initramfs tree or the agent executable): what the guest's files must
// still hash to.
func (m *meter) bootDigest(typ vtpm.EventType) ([32]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ev := range m.log.Events() {
		if ev.PCR == vtpm.PCRBoot && ev.Type == typ && len(ev.Data) == 32 {
			return [32]byte(ev.Data), nil
		}
	}
	return [32]byte{}, fmt.Errorf("no boot event of type %d in the log", typ)
}
