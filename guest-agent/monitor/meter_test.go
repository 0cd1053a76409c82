package monitor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/policy"
	"github.com/sccontainers/scc/attest/verifier"
	"github.com/sccontainers/scc/attest/vtpm"
	"github.com/sccontainers/scc/attest/vtpm/swtpm"
)

// newTPM starts a swtpm of the test's own: a new TPM, as a VM gets.
func newTPM(t *testing.T) transport.TPM {
	t.Helper()
	if _, err := exec.LookPath(swtpm.Binary); err != nil {
		t.Skipf("swtpm binary not installed (apt-get install swtpm): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := swtpm.StartSwtpm(ctx, t.TempDir(), swtpm.WithCommandSocket())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	tpm, err := s.OpenTPM()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm.Close() })
	return tpm
}

// booted returns a meter that measured a boot.
func booted(t *testing.T) *meter {
	t.Helper()
	m := &meter{}
	for _, ev := range []struct {
		typ  vtpm.EventType
		data string
	}{
		{vtpm.EventKernel, "release=6.1.0 build-id=ab"},
		{vtpm.EventCmdline, "console=ttyS0 scc.tpm=io.scc.tpm"},
		{vtpm.EventInitramfs, string(make([]byte, 32))},
		{vtpm.EventAgent, string(bytes.Repeat([]byte{1}, 32))},
	} {
		if err := m.measure(vtpm.PCRBoot, ev.typ, []byte(ev.data)); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// verify checks evidence as a key broker does and returns its claims.
func verify(t *testing.T, ev *vtpm.Evidence, rd [64]byte) *vtpm.Claims {
	t.Helper()
	c, err := vtpm.Verify(ev, vtpm.VerifyOptions{Nonce: vtpm.QualifyingData(rd), TrustedAKs: [][32]byte{vtpm.AKDigest(ev.AKPublic)}})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return c
}

func TestMeterBootAndRestore(t *testing.T) {
	ctx := context.Background()
	m := booted(t)
	template := newTPM(t)
	if err := m.attach(ctx, template); err != nil {
		t.Fatal(err)
	}
	rd := [64]byte{1, 2, 3}
	ev, ek, err := m.evidence(ctx, rd)
	if err != nil {
		t.Fatal(err)
	}
	c := verify(t, ev, rd)
	if o, err := vtpm.OriginOf(c); err != nil || !o.Fresh() {
		t.Fatalf("booted VM: origin %+v, %v; want fresh", o, err)
	}
	if len(c.Events) != 4 {
		t.Errorf("booted VM: %d events, want the 4 of its boot", len(c.Events))
	}

	// Restored: the same log, a new TPM.
	clone := newTPM(t)
	m.mu.Lock()
	m.tpm = clone
	m.mu.Unlock()
	snap := vtpm.RestoreEvent{Snapshot: [32]byte{0x5a}, Nonce: [32]byte{7}}
	if err := m.restored(ctx, snap); err != nil {
		t.Fatal(err)
	}
	ev2, ek2, err := m.evidence(ctx, rd)
	if err != nil {
		t.Fatal(err)
	}
	c2 := verify(t, ev2, rd)
	o, err := vtpm.OriginOf(c2)
	if err != nil || len(o.Restores) != 1 || o.Restores[0] != snap {
		t.Fatalf("restored VM: origin %+v, %v; want restored from %x", o, err, snap.Snapshot)
	}
	if !bytes.Equal(c.PCRs[vtpm.PCRBoot], c2.PCRs[vtpm.PCRBoot]) {
		t.Error("the restored VM's boot PCR differs from the VM it was saved from")
	}
	if bytes.Equal(ek, ek2) || bytes.Equal(ev.AKPublic, ev2.AKPublic) {
		t.Error("the restored VM has the TPM identity of the VM it was saved from")
	}
}

// A TPM replaced without a restore notice does not pass for a fresh boot.
func TestMeterUnannouncedRestore(t *testing.T) {
	ctx := context.Background()
	m := booted(t)
	if err := m.attach(ctx, newTPM(t)); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.tpm = newTPM(t)
	m.mu.Unlock()
	rd := [64]byte{9}
	ev, _, err := m.evidence(ctx, rd)
	if err != nil {
		t.Fatal(err)
	}
	o, err := vtpm.OriginOf(verify(t, ev, rd))
	if err != nil || len(o.Restores) != 1 || o.Restores[0].Snapshot != ([32]byte{}) {
		t.Fatalf("origin %+v, %v; want a restore from an unknown snapshot", o, err)
	}
}

// A TPM holding measurements the log does not explain is refused.
func TestMeterRefusesForeignTPM(t *testing.T) {
	ctx := context.Background()
	tpm := newTPM(t)
	if err := vtpm.ExtendPCR(tpm, vtpm.PCRBoot, [32]byte{0xee}); err != nil {
		t.Fatal(err)
	}
	if err := booted(t).attach(ctx, tpm); err == nil {
		t.Fatal("attach adopted a TPM with foreign measurements")
	}
	tpm2 := newTPM(t)
	if err := vtpm.ExtendPCR(tpm2, vtpm.PCRInitData, [32]byte{0xee}); err != nil {
		t.Fatal(err)
	}
	if err := booted(t).attach(ctx, tpm2); err == nil {
		t.Fatal("attach adopted a TPM with a foreign init data PCR")
	}
}

func TestMeterInitData(t *testing.T) {
	ctx := context.Background()
	m := booted(t)
	if err := m.bindInitData([32]byte{1}); !errors.Is(err, errNoTPM) {
		t.Fatalf("bind without a TPM: %v, want errNoTPM", err)
	}
	if err := m.attach(ctx, newTPM(t)); err != nil {
		t.Fatal(err)
	}
	data := []byte("kbs_url = \"https://kbs\"")
	if err := m.bindInitData(sha256.Sum256(data)); err != nil {
		t.Fatal(err)
	}
	if err := m.bindInitData(sha256.Sum256([]byte("other"))); !errors.Is(err, errInitDataBound) {
		t.Fatalf("second bind: %v, want errInitDataBound", err)
	}
	rd := [64]byte{4}
	ev, _, err := m.evidence(ctx, rd)
	if err != nil {
		t.Fatal(err)
	}
	want := vtpm.InitDataPCR(data)
	if got := verify(t, ev, rd).PCRs[vtpm.PCRInitData]; !bytes.Equal(got, want[:]) {
		t.Errorf("init data PCR %x, want %x", got, want)
	}
}

// A log changed after the fact does not replay to the quoted PCRs.
func TestMeterTamperedLog(t *testing.T) {
	ctx := context.Background()
	m := booted(t)
	if err := m.attach(ctx, newTPM(t)); err != nil {
		t.Fatal(err)
	}
	if err := m.restored(ctx, vtpm.RestoreEvent{Snapshot: [32]byte{0x11}}); err != nil {
		t.Fatal(err)
	}
	rd := [64]byte{5}
	ev, _, err := m.evidence(ctx, rd)
	if err != nil {
		t.Fatal(err)
	}
	// Claim another snapshot, with the event's digest recomputed so that
	// the log itself decodes.
	var l vtpm.Log
	for _, e := range m.log.Events() {
		data := e.Data
		if e.Type == vtpm.EventRestore {
			data, _ = vtpm.RestoreEvent{Snapshot: [32]byte{0x5a}}.MarshalBinary()
		}
		l.Append(e.PCR, e.Type, data)
	}
	forged := *ev
	forged.EventLog, _ = l.MarshalBinary()
	_, err = vtpm.Verify(&forged, vtpm.VerifyOptions{Nonce: vtpm.QualifyingData(rd), InsecureAcceptAnyAK: true})
	if !errors.Is(err, vtpm.ErrEventLogMismatch) {
		t.Fatalf("verify a tampered log: %v, want ErrEventLogMismatch", err)
	}
}

// Images the agent binds are in the image PCR and its log, which a key
// broker's verifier replays and judges against the policy's images.
func TestMeterImage(t *testing.T) {
	ctx := context.Background()
	img := func(c string) attest.Image {
		return attest.Image{Manifest: "sha256:" + strings.Repeat(c, 64), Config: "sha256:" + strings.Repeat("c", 64), Reference: "registry/" + c, Pinned: true}
	}
	m := booted(t)
	if err := m.bindImage(img("a")); !errors.Is(err, errNoTPM) {
		t.Fatalf("bind without a TPM: %v, want errNoTPM", err)
	}
	if err := m.attach(ctx, newTPM(t)); err != nil {
		t.Fatal(err)
	}
	if err := m.bindImage(attest.Image{Manifest: "sha256:12"}); !errors.Is(err, attest.ErrInvalidClaims) {
		t.Fatalf("bind a malformed image: %v", err)
	}
	for _, c := range []string{"a", "b"} {
		if err := m.bindImage(img(c)); err != nil {
			t.Fatal(err)
		}
	}
	rd := [64]byte{5}
	ev, _, err := m.evidence(ctx, rd)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	ak := vtpm.AKDigest(ev.AKPublic)
	boot := verify(t, ev, rd).PCRs[vtpm.PCRBoot]
	doc := func(images ...string) *policy.Document {
		return &policy.Document{Attestation: map[string]policy.TEE{vtpm.TEE: {
			Allow: true, TrustedAKs: []string{hex.EncodeToString(ak[:])},
			PCRs: map[string][]string{"8": {hex.EncodeToString(boot)}}, Images: images,
		}}}
	}
	c, err := verifier.Verify(ctx, vtpm.TEE, raw, verifier.Options{Policy: doc(img("a").Manifest, img("b").Manifest), ReportData: &rd})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Images) != 2 || c.Images[1] != img("b") || c.ImagesFrom != verifier.ImagesFromEventLog {
		t.Errorf("claims show images %+v from %q", c.Images, c.ImagesFrom)
	}
	if _, err := verifier.Verify(ctx, vtpm.TEE, raw, verifier.Options{Policy: doc(img("a").Manifest), ReportData: &rd}); !errors.Is(err, policy.ErrImageNotAllowed) {
		t.Errorf("policy without image b: %v, want ErrImageNotAllowed", err)
	}
}
