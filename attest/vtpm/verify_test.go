package vtpm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"maps"
	"os/exec"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/sccontainers/scc/attest/vtpm"
	"github.com/sccontainers/scc/attest/vtpm/swtpm"
)

// newTPM starts a fresh swtpm for the test and returns a connection to it.
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
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop swtpm: %v", err)
		}
	})
	tpm, err := s.OpenTPM()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm.Close() })
	return tpm
}

// measure logs an event and extends it into the TPM, as scc's monitor
// does.
func measure(t *testing.T, tpm transport.TPM, l *vtpm.Log, pcr int, typ vtpm.EventType, data string) {
	t.Helper()
	d, err := l.Append(pcr, typ, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := vtpm.ExtendPCR(tpm, pcr, d); err != nil {
		t.Fatal(err)
	}
}

func clone(ev *vtpm.Evidence) *vtpm.Evidence {
	c := *ev
	c.Quote = bytes.Clone(ev.Quote)
	c.Signature = bytes.Clone(ev.Signature)
	c.AKPublic = bytes.Clone(ev.AKPublic)
	c.EventLog = bytes.Clone(ev.EventLog)
	c.PCRs = make(map[int][]byte)
	for p, v := range ev.PCRs {
		c.PCRs[p] = bytes.Clone(v)
	}
	return &c
}

func TestQuoteVerify(t *testing.T) {
	tpm := newTPM(t)
	ctx := context.Background()

	var log vtpm.Log
	measure(t, tpm, &log, 9, 1, "kernel")
	measure(t, tpm, &log, 9, 2, "initrd")
	measure(t, tpm, &log, 10, 3, "container image")
	measure(t, tpm, &log, 11, 3, "not quoted")

	nonce := []byte("fresh verifier nonce, 32 bytes!!")
	quoted := []int{10, 9, 0} // unsorted on purpose
	ev, err := vtpm.GetEvidence(ctx, tpm, nonce, quoted, log.MarshalBinary)
	if err != nil {
		t.Fatal(err)
	}
	ak := vtpm.AKDigest(ev.AKPublic)
	replayed := make(map[int][]byte)
	for p, v := range log.Replay() {
		replayed[p] = v[:]
	}
	expected := map[int][]byte{9: replayed[9], 10: replayed[10]}
	good := vtpm.VerifyOptions{Nonce: nonce, TrustedAKs: [][32]byte{{1}, ak}, ExpectedPCRs: expected}

	t.Run("good quote verifies", func(t *testing.T) {
		claims, err := vtpm.Verify(ev, good)
		if err != nil {
			t.Fatal(err)
		}
		if claims.AKDigest != ak {
			t.Errorf("AKDigest = %x, want %x", claims.AKDigest, ak)
		}
		if !bytes.Equal(claims.PCRs[9], replayed[9]) || !bytes.Equal(claims.PCRs[0], make([]byte, 32)) {
			t.Errorf("claimed PCRs = %x", claims.PCRs)
		}
		// Events of quoted PCRs only, in log order.
		var names []string
		for _, e := range claims.Events {
			names = append(names, string(e.Data))
		}
		if got := len(names); got != 3 || names[0] != "kernel" || names[2] != "container image" {
			t.Errorf("claimed events = %q", names)
		}
	})

	t.Run("same AK every time", func(t *testing.T) {
		ev2, err := vtpm.GetEvidence(ctx, tpm, []byte("n2"), []int{9}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if vtpm.AKDigest(ev2.AKPublic) != ak {
			t.Error("the AK changed between quotes, so it cannot be pinned")
		}
		if ev2.EventLog != nil {
			t.Error("event log attached without a source")
		}
		if _, err := vtpm.Verify(ev2, vtpm.VerifyOptions{Nonce: []byte("n2"), TrustedAKs: [][32]byte{ak}}); err != nil {
			t.Errorf("quote without event log: %v", err)
		}
	})

	otherLog := func() []byte {
		var l vtpm.Log
		l.Append(9, 1, []byte("kernel"))
		l.Append(9, 2, []byte("evil initrd"))
		l.Append(10, 3, []byte("container image"))
		b, _ := l.MarshalBinary()
		return b
	}()

	for _, tc := range []struct {
		name   string
		mutate func(ev *vtpm.Evidence, o *vtpm.VerifyOptions)
		want   error
	}{
		{"wrong nonce", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) { o.Nonce = []byte("another nonce") }, vtpm.ErrNonceMismatch},
		{"nonce prefix", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) { o.Nonce = nonce[:16] }, vtpm.ErrNonceMismatch},
		{"tampered PCR value", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) { ev.PCRs[10][0] ^= 1 }, vtpm.ErrPCRDigestMismatch},
		{"PCR value missing", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) { delete(ev.PCRs, 0) }, vtpm.ErrPCRDigestMismatch},
		{"extra PCR value", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) { ev.PCRs[11] = make([]byte, 32) }, vtpm.ErrPCRDigestMismatch},
		{"tampered event data", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) { ev.EventLog[len(ev.EventLog)-1] ^= 1 }, vtpm.ErrEventLogMismatch},
		{"substituted event log", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) { ev.EventLog = otherLog }, vtpm.ErrEventLogMismatch},
		{"garbage event log", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) { ev.EventLog = []byte("garbage") }, vtpm.ErrEventLogMismatch},
		{"AK not trusted", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) { o.TrustedAKs = [][32]byte{{1}} }, vtpm.ErrUntrustedAK},
		{"no AK trusted", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) { o.TrustedAKs = nil }, vtpm.ErrUntrustedAK},
		{"tampered quote", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) { ev.Quote[len(ev.Quote)-1] ^= 1 }, vtpm.ErrBadSignature},
		{"tampered signature", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) { ev.Signature[len(ev.Signature)-1] ^= 1 }, vtpm.ErrBadSignature},
		{"policy: wrong PCR value", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) {
			o.ExpectedPCRs = map[int][]byte{9: make([]byte, 32)}
		}, vtpm.ErrPolicy},
		{"policy: PCR not quoted", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) {
			o.ExpectedPCRs = maps.Clone(expected)
			o.ExpectedPCRs[11] = replayed[11]
		}, vtpm.ErrPolicy},
		{"truncated quote", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) { ev.Quote = ev.Quote[:10] }, vtpm.ErrBadSignature},
		{"truncated AK", func(ev *vtpm.Evidence, o *vtpm.VerifyOptions) {
			ev.AKPublic = ev.AKPublic[:20]
			o.InsecureAcceptAnyAK = true
		}, vtpm.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, o := clone(ev), good
			tc.mutate(e, &o)
			_, err := vtpm.Verify(e, o)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("insecure accept any AK", func(t *testing.T) {
		o := good
		o.TrustedAKs = nil
		o.InsecureAcceptAnyAK = true
		if _, err := vtpm.Verify(clone(ev), o); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("nonce required", func(t *testing.T) {
		o := good
		o.Nonce = nil
		if _, err := vtpm.Verify(clone(ev), o); err == nil {
			t.Fatal("Verify without an expected nonce succeeded")
		}
	})
}

// TestExtendThenQuote measures after a first quote: the new quote and its
// log replay to the new values, and the old log no longer matches.
func TestExtendThenQuote(t *testing.T) {
	tpm := newTPM(t)
	ctx := context.Background()
	var log vtpm.Log
	measure(t, tpm, &log, 12, 1, "first")
	before, err := vtpm.GetEvidence(ctx, tpm, []byte("n1"), []int{12}, log.MarshalBinary)
	if err != nil {
		t.Fatal(err)
	}
	measure(t, tpm, &log, 12, 1, "second")
	after, err := vtpm.GetEvidence(ctx, tpm, []byte("n2"), []int{12}, log.MarshalBinary)
	if err != nil {
		t.Fatal(err)
	}
	opts := vtpm.VerifyOptions{Nonce: []byte("n2"), TrustedAKs: [][32]byte{vtpm.AKDigest(after.AKPublic)}}
	claims, err := vtpm.Verify(after, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := log.Replay()[12]
	if !bytes.Equal(claims.PCRs[12], want[:]) || len(claims.Events) != 2 {
		t.Fatalf("claims = %x, %d events; want pcr 12 = %x, 2 events", claims.PCRs[12], len(claims.Events), want)
	}
	if bytes.Equal(before.PCRs[12], after.PCRs[12]) {
		t.Fatal("PCR 12 did not change after the extend")
	}
	// The old quote with the new log: the log explains other values.
	stale := clone(before)
	stale.EventLog = after.EventLog
	opts.Nonce = []byte("n1")
	if _, err := vtpm.Verify(stale, opts); !errors.Is(err, vtpm.ErrEventLogMismatch) {
		t.Fatalf("old quote with newer log: %v, want ErrEventLogMismatch", err)
	}
}

// TestQuoteAllPCRs covers reading more PCRs than one TPM2_PCR_Read returns.
func TestQuoteAllPCRs(t *testing.T) {
	tpm := newTPM(t)
	all := make([]int, vtpm.NumPCRs)
	for i := range all {
		all[i] = i
	}
	ev, err := vtpm.GetEvidence(context.Background(), tpm, []byte("n"), all, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.PCRs) != vtpm.NumPCRs {
		t.Fatalf("got %d PCR values", len(ev.PCRs))
	}
	if _, err := vtpm.Verify(ev, vtpm.VerifyOptions{Nonce: []byte("n"), InsecureAcceptAnyAK: true}); err != nil {
		t.Fatal(err)
	}
}

// TestTCGLogAgainstTPM replays a firmware-style TCG log whose digests
// were extended into a real TPM.
func TestTCGLogAgainstTPM(t *testing.T) {
	tpm := newTPM(t)
	events := []vtpm.TCGEvent{
		{PCR: 0, Type: 0x8, Data: "S-CRTM version"},
		{PCR: 4, Type: 0xd, Data: "boot loader"},
		{PCR: 0, Type: 0x80000008, Data: "firmware volume"},
	}
	log, digests := vtpm.BuildTCGLog(events)
	for i, d := range digests {
		if err := vtpm.ExtendPCR(tpm, int(events[i].PCR), d); err != nil {
			t.Fatal(err)
		}
	}
	ev, err := vtpm.GetEvidence(context.Background(), tpm, []byte("n"), []int{0, 4}, func() ([]byte, error) { return log, nil })
	if err != nil {
		t.Fatal(err)
	}
	opts := vtpm.VerifyOptions{Nonce: []byte("n"), InsecureAcceptAnyAK: true}
	claims, err := vtpm.Verify(ev, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(claims.Events) != 3 || string(claims.Events[1].Data) != "boot loader" {
		t.Fatalf("events = %+v", claims.Events)
	}
	// A log that omits an event no longer explains PCR 0.
	short, _ := vtpm.BuildTCGLog(events[:2])
	ev.EventLog = short
	if _, err := vtpm.Verify(ev, opts); !errors.Is(err, vtpm.ErrEventLogMismatch) {
		t.Fatalf("short TCG log: %v, want ErrEventLogMismatch", err)
	}
}

func TestGetEvidenceRejects(t *testing.T) {
	tpm := newTPM(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		nonce []byte
		pcrs  []int
	}{
		{"no nonce", nil, []int{0}},
		{"nonce too long", make([]byte, vtpm.MaxNonceSize+1), []int{0}},
		{"no pcrs", []byte("n"), nil},
		{"pcr out of range", []byte("n"), []int{24}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := vtpm.GetEvidence(ctx, tpm, tc.nonce, tc.pcrs, nil); err == nil {
				t.Fatal("GetEvidence accepted it")
			}
		})
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := vtpm.GetEvidence(canceled, tpm, []byte("n"), []int{0}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled context: %v", err)
	}
}

func TestAKName(t *testing.T) {
	tpm := newTPM(t)
	ev, err := vtpm.GetEvidence(context.Background(), tpm, []byte("n"), []int{0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	name, err := vtpm.AKName(ev.AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	digest := vtpm.AKDigest(ev.AKPublic)
	// A SHA-256 name is the algorithm id 0x000B then the digest.
	want := append([]byte{0x00, 0x0B}, digest[:]...)
	if !bytes.Equal(name, want) {
		t.Fatalf("AKName = %x, want %x", name, want)
	}
	// The digest is over the canonical encoding, so re-encoding the
	// parsed key gives the same identity.
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(tpm2.Marshal(*pub)) != digest {
		t.Fatal("AKPublic is not the canonical TPMT_PUBLIC encoding")
	}
	if _, err := vtpm.AKName([]byte{1, 2}); !errors.Is(err, vtpm.ErrMalformed) {
		t.Fatalf("AKName(garbage) = %v, want ErrMalformed", err)
	}
}
