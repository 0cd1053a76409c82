package vtpm

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"
)

// tcgLogBuilder writes a TCG PC Client crypto-agile log with SHA-1 and
// SHA-256 digests, as firmware does.
type tcgLogBuilder struct {
	buf bytes.Buffer
}

func (b *tcgLogBuilder) le32(v uint32) { binary.Write(&b.buf, binary.LittleEndian, v) }
func (b *tcgLogBuilder) le16(v uint16) { binary.Write(&b.buf, binary.LittleEndian, v) }

func newTCGLog(algs ...uint16) *tcgLogBuilder {
	if algs == nil {
		algs = []uint16{algSHA1, algSHA256}
	}
	b := &tcgLogBuilder{}
	var spec bytes.Buffer
	spec.Write(specIDSignature)
	binary.Write(&spec, binary.LittleEndian, uint32(0)) // platform class
	spec.Write([]byte{0, 2, 0, 2})                      // version 2.0, errata, uintn size
	binary.Write(&spec, binary.LittleEndian, uint32(len(algs)))
	for _, a := range algs {
		size := uint16(32)
		if a == algSHA1 {
			size = 20
		}
		binary.Write(&spec, binary.LittleEndian, a)
		binary.Write(&spec, binary.LittleEndian, size)
	}
	spec.WriteByte(0) // vendor info size

	b.le32(0)
	b.le32(uint32(EvNoAction))
	b.buf.Write(make([]byte, sha1Size))
	b.le32(uint32(spec.Len()))
	b.buf.Write(spec.Bytes())
	return b
}

// event appends an event whose digests are those of data; it returns
// the SHA-256 digest.
func (b *tcgLogBuilder) event(pcr uint32, typ EventType, data []byte) [32]byte {
	d256 := sha256.Sum256(data)
	d1 := sha1.Sum(data)
	b.le32(pcr)
	b.le32(uint32(typ))
	b.le32(2)
	b.le16(algSHA1)
	b.buf.Write(d1[:])
	b.le16(algSHA256)
	b.buf.Write(d256[:])
	b.le32(uint32(len(data)))
	b.buf.Write(data)
	return d256
}

func (b *tcgLogBuilder) bytes() []byte { return bytes.Clone(b.buf.Bytes()) }

func TestParseTCGLog(t *testing.T) {
	b := newTCGLog()
	loc := append(bytes.Clone(startupLocalitySn), 3)
	b.event(0, EvNoAction, loc)
	d0 := b.event(0, 0x8, []byte("S-CRTM version"))
	d7 := b.event(7, 0x80000001, []byte("SecureBoot=0"))
	d0b := b.event(0, 0x80000008, []byte("firmware volume"))

	events, initial, err := parseTCGLog(b.bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 {
		t.Fatalf("got %d events, want 3 (EV_NO_ACTION is not an extend)", len(events))
	}
	if events[1].PCR != 7 || events[1].Type != 0x80000001 || string(events[1].Data) != "SecureBoot=0" {
		t.Errorf("event 1 = %+v", events[1])
	}
	got := replay(events, initial)

	// PCR 0 starts at the startup locality, not zero.
	var pcr0 [32]byte
	pcr0[31] = 3
	for _, d := range [][32]byte{d0, d0b} {
		pcr0 = sha256.Sum256(append(pcr0[:], d[:]...))
	}
	if got[0] != pcr0 {
		t.Errorf("pcr 0 = %x, want %x", got[0], pcr0)
	}
	if got[7] != extendAll(d7) {
		t.Errorf("pcr 7 = %x, want %x", got[7], extendAll(d7))
	}
}

func TestParseTCGLogRejects(t *testing.T) {
	good := newTCGLog()
	good.event(4, 0xd, []byte("boot loader"))
	g := good.bytes()

	sha1Only := newTCGLog(algSHA1)
	unknownAlg := newTCGLog()
	unknownAlg.le32(1)
	unknownAlg.le32(1)
	unknownAlg.le32(1)
	unknownAlg.le16(0x0012) // SM3, not declared
	unknownAlg.buf.Write(make([]byte, 32))
	unknownAlg.le32(0)
	badPCR := newTCGLog()
	badPCR.event(24, 1, nil)

	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"scc log", []byte("SCCEVLOG\x00\x01\x00\x00")},
		{"no spec id", func() []byte { c := bytes.Clone(g); c[32] = 'X'; return c }()},
		{"truncated", g[:len(g)-3]},
		{"trailing garbage", append(bytes.Clone(g), 1, 2)},
		{"no sha256 bank", sha1Only.bytes()},
		{"undeclared algorithm", unknownAlg.bytes()},
		{"pcr out of range", badPCR.bytes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := parseTCGLog(tc.in); !errors.Is(err, ErrMalformedLog) {
				t.Fatalf("parseTCGLog = %v, want ErrMalformedLog", err)
			}
		})
	}
}

func FuzzParseTCGLog(f *testing.F) {
	b := newTCGLog()
	b.event(0, EvNoAction, append(bytes.Clone(startupLocalitySn), 0))
	b.event(1, 2, []byte("x"))
	f.Add(b.bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		events, _, err := parseTCGLog(in)
		if err != nil {
			if !errors.Is(err, ErrMalformedLog) {
				t.Fatalf("error %v does not wrap ErrMalformedLog", err)
			}
			return
		}
		for _, ev := range events {
			if ev.PCR < 0 || ev.PCR >= NumPCRs || ev.Type == EvNoAction {
				t.Fatalf("accepted bad event %+v", ev)
			}
		}
	})
}
