package vtpm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/vtpm"
)

func TestRestoreEventEncoding(t *testing.T) {
	r := vtpm.RestoreEvent{Snapshot: [32]byte{1, 2}, Nonce: [32]byte{31: 9}}
	b, err := r.MarshalBinary()
	if err != nil || len(b) != 64 {
		t.Fatalf("MarshalBinary = %d bytes, %v", len(b), err)
	}
	var got vtpm.RestoreEvent
	if err := got.UnmarshalBinary(b); err != nil || got != r {
		t.Fatalf("UnmarshalBinary = %+v, %v; want %+v", got, err, r)
	}
	for _, n := range []int{0, 32, 63, 65} {
		if err := got.UnmarshalBinary(make([]byte, n)); !errors.Is(err, vtpm.ErrMalformedLog) {
			t.Errorf("%d bytes: %v, want ErrMalformedLog", n, err)
		}
	}
}

func TestCleanEventEncoding(t *testing.T) {
	e := vtpm.CleanEvent{Generation: 1<<40 + 3, Nonce: [32]byte{7, 31: 1}}
	b, err := e.MarshalBinary()
	if err != nil || len(b) != 40 {
		t.Fatalf("MarshalBinary = %d bytes, %v", len(b), err)
	}
	var got vtpm.CleanEvent
	if err := got.UnmarshalBinary(b); err != nil || got != e {
		t.Fatalf("UnmarshalBinary = %+v, %v; want %+v", got, err, e)
	}
	for _, n := range []int{0, 8, 39, 41, 64} {
		if err := got.UnmarshalBinary(make([]byte, n)); !errors.Is(err, vtpm.ErrMalformedLog) {
			t.Errorf("%d bytes: %v, want ErrMalformedLog", n, err)
		}
	}
}

// claims builds verified-looking claims from a log: PCR values are the
// log's replay, as Verify establishes them.
func claims(t *testing.T, l *vtpm.Log, extra map[int][]byte) *vtpm.Claims {
	t.Helper()
	c := &vtpm.Claims{PCRs: map[int][]byte{}, Events: l.Events()}
	for _, p := range vtpm.MonitorPCRs {
		c.PCRs[p] = make([]byte, 32)
	}
	for p, v := range l.Replay() {
		c.PCRs[p] = bytes.Clone(v[:])
	}
	for p, v := range extra {
		c.PCRs[p] = v
	}
	return c
}

func TestOriginOf(t *testing.T) {
	restore := func(snap byte) []byte {
		b, _ := vtpm.RestoreEvent{Snapshot: [32]byte{snap}, Nonce: [32]byte{snap, 1}}.MarshalBinary()
		return b
	}
	boot := func() *vtpm.Log {
		var l vtpm.Log
		l.Append(vtpm.PCRBoot, vtpm.EventKernel, []byte("release=6.1"))
		l.Append(vtpm.PCRBoot, vtpm.EventCmdline, []byte("console=ttyS0"))
		return &l
	}

	fresh := boot()
	if o, err := vtpm.OriginOf(claims(t, fresh, nil)); err != nil || !o.Fresh() {
		t.Errorf("fresh boot: %+v, %v", o, err)
	}

	once := boot()
	once.Append(vtpm.PCRLifecycle, vtpm.EventRestore, restore(7))
	o, err := vtpm.OriginOf(claims(t, once, nil))
	if err != nil || o.Fresh() || len(o.Restores) != 1 || o.Restores[0].Snapshot[0] != 7 {
		t.Errorf("one restore: %+v, %v", o, err)
	}

	twice := boot()
	twice.Append(vtpm.PCRLifecycle, vtpm.EventRestore, restore(7))
	twice.Append(vtpm.PCRLifecycle, vtpm.EventRestore, restore(8))
	if o, err := vtpm.OriginOf(claims(t, twice, nil)); err != nil || len(o.Restores) != 2 || o.Restores[1].Snapshot[0] != 8 {
		t.Errorf("two restores: %+v, %v", o, err)
	}

	clean := func(gen uint64) []byte {
		b, _ := vtpm.CleanEvent{Generation: gen, Nonce: [32]byte{byte(gen)}}.MarshalBinary()
		return b
	}
	reused := boot()
	reused.Append(vtpm.PCRLifecycle, vtpm.EventClean, clean(1))
	reused.Append(vtpm.PCRLifecycle, vtpm.EventClean, clean(2))
	if o, err := vtpm.OriginOf(claims(t, reused, nil)); err != nil || !o.Fresh() || o.Generation() != 2 {
		t.Errorf("booted, reused twice: %+v, %v", o, err)
	}
	restoredReused := boot()
	restoredReused.Append(vtpm.PCRLifecycle, vtpm.EventRestore, restore(7))
	restoredReused.Append(vtpm.PCRLifecycle, vtpm.EventClean, clean(1))
	if o, err := vtpm.OriginOf(claims(t, restoredReused, nil)); err != nil || o.Fresh() || o.Generation() != 1 {
		t.Errorf("restored, reused once: %+v, %v", o, err)
	}
	for name, gens := range map[string][]uint64{"skipped": {1, 3}, "repeated": {1, 1}, "from zero": {0}} {
		l := boot()
		for _, g := range gens {
			l.Append(vtpm.PCRLifecycle, vtpm.EventClean, clean(g))
		}
		if _, err := vtpm.OriginOf(claims(t, l, nil)); !errors.Is(err, vtpm.ErrPolicy) {
			t.Errorf("generations %s: %v, want ErrPolicy", name, err)
		}
	}
	shortClean := boot()
	shortClean.Append(vtpm.PCRLifecycle, vtpm.EventClean, []byte("short"))
	if _, err := vtpm.OriginOf(claims(t, shortClean, nil)); !errors.Is(err, vtpm.ErrMalformedLog) {
		t.Errorf("short clean event: %v, want ErrMalformedLog", err)
	}

	// The lifecycle PCR must be quoted and explained.
	c := claims(t, fresh, nil)
	delete(c.PCRs, vtpm.PCRLifecycle)
	if _, err := vtpm.OriginOf(c); !errors.Is(err, vtpm.ErrPolicy) {
		t.Errorf("lifecycle PCR not quoted: %v, want ErrPolicy", err)
	}
	if _, err := vtpm.OriginOf(claims(t, fresh, map[int][]byte{vtpm.PCRLifecycle: bytes.Repeat([]byte{1}, 32)})); !errors.Is(err, vtpm.ErrPolicy) {
		t.Errorf("lifecycle PCR set without events: %v, want ErrPolicy", err)
	}
	odd := boot()
	odd.Append(vtpm.PCRLifecycle, vtpm.EventKernel, []byte("not a restore"))
	if _, err := vtpm.OriginOf(claims(t, odd, nil)); !errors.Is(err, vtpm.ErrPolicy) {
		t.Errorf("unknown lifecycle event: %v, want ErrPolicy", err)
	}
	short := boot()
	short.Append(vtpm.PCRLifecycle, vtpm.EventRestore, []byte("short"))
	if _, err := vtpm.OriginOf(claims(t, short, nil)); !errors.Is(err, vtpm.ErrMalformedLog) {
		t.Errorf("short restore event: %v, want ErrMalformedLog", err)
	}
}

func TestInitDataPCR(t *testing.T) {
	tpm := newTPM(t)
	var l vtpm.Log
	data := []byte(`kbs_url = "https://kbs.example"`)
	d := sha256.Sum256(data)
	measure(t, tpm, &l, vtpm.PCRInitData, vtpm.EventInitData, string(d[:]))
	got, err := vtpm.ReadPCRs(tpm, []int{vtpm.PCRInitData})
	if err != nil {
		t.Fatal(err)
	}
	want := vtpm.InitDataPCR(data)
	if !bytes.Equal(got[vtpm.PCRInitData], want[:]) {
		t.Errorf("PCR %d is %x after binding, InitDataPCR says %x", vtpm.PCRInitData, got[vtpm.PCRInitData], want)
	}
	if other := vtpm.InitDataPCR([]byte("other")); other == want {
		t.Error("two init data give one PCR value")
	}
}

// Two TPMs have two identities; one TPM keeps its own.
func TestEKPublic(t *testing.T) {
	a, b := newTPM(t), newTPM(t)
	ekA, err := vtpm.EKPublic(a)
	if err != nil {
		t.Fatal(err)
	}
	ekA2, err := vtpm.EKPublic(a)
	if err != nil {
		t.Fatal(err)
	}
	ekB, err := vtpm.EKPublic(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ekA, ekA2) {
		t.Error("one TPM gave two EKs")
	}
	if bytes.Equal(ekA, ekB) {
		t.Error("two TPMs share an EK")
	}
	// The quote of a monitor's PCRs works on such a TPM.
	if _, err := vtpm.GetEvidence(context.Background(), a, []byte("nonce"), vtpm.MonitorPCRs, nil); err != nil {
		t.Fatal(err)
	}
}

func TestImagesOf(t *testing.T) {
	img := func(c string) attest.Image {
		return attest.Image{Manifest: "sha256:" + strings.Repeat(c, 64), Config: "sha256:" + strings.Repeat("c", 64), Reference: "r/" + c, Pinned: true}
	}
	var none vtpm.Log
	none.Append(vtpm.PCRBoot, vtpm.EventKernel, []byte("release=6.1"))
	if imgs, err := vtpm.ImagesOf(claims(t, &none, nil)); err != nil || len(imgs) != 0 {
		t.Errorf("no image: %v, %v", imgs, err)
	}

	var two vtpm.Log
	for _, c := range []string{"a", "b"} {
		data, err := img(c).MarshalEvent()
		if err != nil {
			t.Fatal(err)
		}
		two.Append(vtpm.PCRImage, vtpm.EventImage, data)
	}
	imgs, err := vtpm.ImagesOf(claims(t, &two, nil))
	if err != nil || len(imgs) != 2 || imgs[0] != img("a") || imgs[1] != img("b") {
		t.Errorf("two images: %+v, %v", imgs, err)
	}

	c := claims(t, &two, nil)
	delete(c.PCRs, vtpm.PCRImage)
	if _, err := vtpm.ImagesOf(c); !errors.Is(err, vtpm.ErrPolicy) {
		t.Errorf("image pcr not quoted: %v", err)
	}
	if _, err := vtpm.ImagesOf(claims(t, &none, map[int][]byte{vtpm.PCRImage: bytes.Repeat([]byte{1}, 32)})); !errors.Is(err, vtpm.ErrPolicy) {
		t.Errorf("image pcr without events: %v", err)
	}
	var other vtpm.Log
	other.Append(vtpm.PCRImage, vtpm.EventKernel, []byte("x"))
	if _, err := vtpm.ImagesOf(claims(t, &other, nil)); !errors.Is(err, vtpm.ErrPolicy) {
		t.Errorf("foreign event type: %v", err)
	}
	var bad vtpm.Log
	bad.Append(vtpm.PCRImage, vtpm.EventImage, []byte(`{"manifest":"sha256:zz"}`))
	if _, err := vtpm.ImagesOf(claims(t, &bad, nil)); !errors.Is(err, vtpm.ErrMalformedLog) {
		t.Errorf("malformed image event: %v", err)
	}
}
