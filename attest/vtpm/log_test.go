package vtpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// extendAll computes by hand what a TPM holds after extending digests
// into a zeroed PCR, independently of replay.
func extendAll(digests ...[32]byte) [32]byte {
	var pcr [32]byte
	for _, d := range digests {
		pcr = sha256.Sum256(append(pcr[:], d[:]...))
	}
	return pcr
}

func TestLogAppendReplay(t *testing.T) {
	var l Log
	d1, err := l.Append(9, 1, []byte("kernel"))
	if err != nil {
		t.Fatal(err)
	}
	d2, err := l.Append(9, 2, []byte("initrd"))
	if err != nil {
		t.Fatal(err)
	}
	d3, err := l.Append(14, 1, nil)
	if err != nil {
		t.Fatal(err)
	}

	// The digest binds the type: same data, other type, other digest.
	if EventDigest(1, []byte("kernel")) == EventDigest(2, []byte("kernel")) {
		t.Error("EventDigest ignores the event type")
	}
	want1 := sha256.Sum256(append([]byte{0, 0, 0, 1}, "kernel"...))
	if d1 != want1 {
		t.Errorf("Append digest = %x, want SHA-256(type||data) = %x", d1, want1)
	}

	got := l.Replay()
	want := map[int][32]byte{9: extendAll(d1, d2), 14: extendAll(d3)}
	if len(got) != len(want) {
		t.Fatalf("Replay has PCRs %v, want %v", got, want)
	}
	for p, v := range want {
		if got[p] != v {
			t.Errorf("Replay()[%d] = %x, want %x", p, got[p], v)
		}
	}

	evs := l.Events()
	if len(evs) != 3 || evs[1].PCR != 9 || evs[1].Type != 2 || string(evs[1].Data) != "initrd" {
		t.Fatalf("Events() = %+v", evs)
	}
	evs[0].Data[0] = 'X' // a copy: must not change the log
	if string(l.Events()[0].Data) != "kernel" {
		t.Error("Events returned the log's own data slice")
	}
}

func TestLogAppendRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		pcr  int
		data []byte
	}{
		{"negative pcr", -1, nil},
		{"pcr 24", NumPCRs, nil},
		{"data too large", 0, make([]byte, MaxEventData+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l Log
			if _, err := l.Append(tc.pcr, 0, tc.data); err == nil {
				t.Fatal("Append accepted it")
			}
			if len(l.Events()) != 0 {
				t.Fatal("rejected event was recorded")
			}
		})
	}
}

func TestLogRoundTrip(t *testing.T) {
	var l Log
	for i := 0; i < 5; i++ {
		if _, err := l.Append(i*5%NumPCRs, EventType(i), bytes.Repeat([]byte{byte(i)}, i*3)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var l2 Log
	if err := l2.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	b2, _ := l2.MarshalBinary()
	if !bytes.Equal(b, b2) {
		t.Fatal("re-encoding differs")
	}
	if fmt.Sprint(l.Replay()) != fmt.Sprint(l2.Replay()) {
		t.Fatal("decoded log replays differently")
	}

	var empty Log
	eb, _ := empty.MarshalBinary()
	if len(eb) != logHeaderSize {
		t.Fatalf("empty log encodes to %d bytes", len(eb))
	}
	if err := l2.UnmarshalBinary(eb); err != nil || len(l2.Events()) != 0 {
		t.Fatalf("empty log: %v, %d events", err, len(l2.Events()))
	}
}

// TestLogEncoding pins the documented wire format byte by byte.
func TestLogEncoding(t *testing.T) {
	var l Log
	d, _ := l.Append(3, 0x0102, []byte("ab"))
	b, _ := l.MarshalBinary()
	want := []byte("SCCEVLOG")
	want = append(want, 0, 1, 0, 0)
	want = append(want, 0, 0, 0, 3, 0, 0, 1, 2)
	want = append(want, d[:]...)
	want = append(want, 0, 0, 0, 2, 'a', 'b')
	if !bytes.Equal(b, want) {
		t.Fatalf("encoding\n got %x\nwant %x", b, want)
	}
}

func TestLogUnmarshalRejects(t *testing.T) {
	var l Log
	l.Append(7, 1, []byte("data"))
	good, _ := l.MarshalBinary()
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }

	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"bad magic", mutate(func(b []byte) []byte { b[0] = 'X'; return b })},
		{"version 2", mutate(func(b []byte) []byte { b[9] = 2; return b })},
		{"reserved set", mutate(func(b []byte) []byte { b[11] = 1; return b })},
		{"truncated header", good[:logHeaderSize-1]},
		{"truncated record", good[:logHeaderSize+10]},
		{"truncated data", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"pcr 24", mutate(func(b []byte) []byte { b[logHeaderSize+3] = NumPCRs; return b })},
		{"data altered", mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b })},
		{"type altered", mutate(func(b []byte) []byte { b[logHeaderSize+7] ^= 1; return b })},
		{"digest altered", mutate(func(b []byte) []byte { b[logHeaderSize+8] ^= 1; return b })},
		{"length too large", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[logHeaderSize+40:], MaxEventData+1)
			return b
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l2 Log
			err := l2.UnmarshalBinary(tc.in)
			if !errors.Is(err, ErrMalformedLog) {
				t.Fatalf("UnmarshalBinary = %v, want ErrMalformedLog", err)
			}
		})
	}
}

func FuzzUnmarshalLog(f *testing.F) {
	var l Log
	l.Append(0, 1, []byte("a"))
	l.Append(23, 0xffffffff, bytes.Repeat([]byte{7}, 40))
	seed, _ := l.MarshalBinary()
	f.Add(seed)
	f.Add(seed[:logHeaderSize])
	f.Add([]byte("SCCEVLOG\x00\x01\x00\x00\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var l Log
		if err := l.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrMalformedLog) {
				t.Fatalf("error %v does not wrap ErrMalformedLog", err)
			}
			return
		}
		// Whatever is accepted is canonical and self-consistent.
		out, err := l.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("accepted input does not re-encode to itself")
		}
		for _, ev := range l.Events() {
			if ev.PCR < 0 || ev.PCR >= NumPCRs || EventDigest(ev.Type, ev.Data) != ev.Digest {
				t.Fatalf("accepted bad event %+v", ev)
			}
		}
	})
}

func ExampleLog() {
	var l Log
	digest, _ := l.Append(9, 1, []byte("container image sha256:..."))
	// The monitor now extends digest into PCR 9 (ExtendPCR), so that
	// the log and the TPM stay in step.
	fmt.Printf("extend pcr 9 with %x...\n", digest[:4])
	pcr9 := l.Replay()[9]
	fmt.Printf("pcr 9 replays to %x...\n", pcr9[:4])
	b, _ := l.MarshalBinary()
	fmt.Printf("%d bytes, magic %q\n", len(b), b[:8])
	// Output:
	// extend pcr 9 with 9bf0cb32...
	// pcr 9 replays to 93cc08db...
	// 82 bytes, magic "SCCEVLOG"
}

func TestLogFilter(t *testing.T) {
	var l Log
	for i, pcr := range []int{8, 9, 11, 9, 8} {
		if _, err := l.Append(pcr, EventType(i+1), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	l.Filter(func(ev Event) bool { return ev.PCR != 9 })
	var got []EventType
	for _, ev := range l.Events() {
		got = append(got, ev.Type)
	}
	if want := []EventType{1, 3, 5}; !slices.Equal(got, want) {
		t.Fatalf("after Filter: event types %v, want %v", got, want)
	}
	if _, err := l.Append(9, 6, nil); err != nil || len(l.Events()) != 4 {
		t.Fatalf("append after Filter: %v, %d events", err, len(l.Events()))
	}
}
