package vtpm

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// TCG PC Client event types that replay treats specially.
const (
	// EvNoAction events carry information and are never extended.
	EvNoAction EventType = 0x3
)

const (
	algSHA1   = 0x0004
	algSHA256 = 0x000B
	sha1Size  = 20
)

var (
	specIDSignature   = []byte("Spec ID Event03\x00")
	startupLocalitySn = []byte("StartupLocality\x00")
)

// parseTCGLog decodes a TCG PC Client crypto-agile event log (the format
// of Linux's binary_bios_measurements) and returns its events with their
// SHA-256 digests, and the initial PCR values it implies (a
// StartupLocality event sets PCR 0's). The log is untrusted; only its
// replay against quoted PCRs makes its events meaningful.
func parseTCGLog(b []byte) ([]Event, map[int][32]byte, error) {
	r := tcgReader{b: b}
	// The first event is in the SHA-1 format and holds the Spec ID
	// event, which lists the digest sizes used by the rest of the log.
	pcr, typ := r.u32(), r.u32()
	r.skip(sha1Size)
	spec := r.bytes(r.u32())
	if r.err != nil {
		return nil, nil, fmt.Errorf("%w: tcg: first event: %v", ErrMalformedLog, r.err)
	}
	if pcr != 0 || EventType(typ) != EvNoAction || !bytes.HasPrefix(spec, specIDSignature) {
		return nil, nil, fmt.Errorf("%w: tcg: no crypto-agile Spec ID event", ErrMalformedLog)
	}
	sizes, err := parseSpecID(spec)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := sizes[algSHA256]; !ok {
		return nil, nil, fmt.Errorf("%w: tcg: log has no SHA-256 digests", ErrMalformedLog)
	}

	initial := make(map[int][32]byte)
	var events []Event
	for r.err == nil && len(r.b) > 0 {
		if len(events) >= MaxEvents {
			return nil, nil, fmt.Errorf("%w: tcg: more than %d events", ErrMalformedLog, MaxEvents)
		}
		var ev Event
		pcr := r.u32()
		ev.Type = EventType(r.u32())
		count := r.u32()
		if r.err == nil && count > uint32(len(sizes)) {
			return nil, nil, fmt.Errorf("%w: tcg: event %d has %d digests", ErrMalformedLog, len(events), count)
		}
		found := false
		for i := uint32(0); i < count && r.err == nil; i++ {
			alg := r.u16()
			size, ok := sizes[alg]
			if r.err == nil && !ok {
				return nil, nil, fmt.Errorf("%w: tcg: event %d: digest algorithm 0x%x not in Spec ID event", ErrMalformedLog, len(events), alg)
			}
			d := r.bytes(uint32(size))
			if alg == algSHA256 && r.err == nil {
				copy(ev.Digest[:], d)
				found = true
			}
		}
		n := r.u32()
		if r.err == nil && n > MaxEventData {
			return nil, nil, fmt.Errorf("%w: tcg: event %d: %d bytes of data", ErrMalformedLog, len(events), n)
		}
		ev.Data = bytes.Clone(r.bytes(n))
		if r.err != nil {
			break
		}
		if pcr >= NumPCRs {
			return nil, nil, fmt.Errorf("%w: tcg: event %d: pcr %d out of range", ErrMalformedLog, len(events), pcr)
		}
		ev.PCR = int(pcr)
		if ev.Type == EvNoAction {
			// Not extended. StartupLocality tells which locality
			// started the TPM, which is PCR 0's initial last byte.
			if pcr == 0 && len(ev.Data) == len(startupLocalitySn)+1 && bytes.HasPrefix(ev.Data, startupLocalitySn) {
				var v [32]byte
				v[31] = ev.Data[len(ev.Data)-1]
				initial[0] = v
			}
			continue
		}
		if !found {
			return nil, nil, fmt.Errorf("%w: tcg: event %d has no SHA-256 digest", ErrMalformedLog, len(events))
		}
		events = append(events, ev)
	}
	if r.err != nil {
		return nil, nil, fmt.Errorf("%w: tcg: event %d: %v", ErrMalformedLog, len(events), r.err)
	}
	return events, initial, nil
}

// parseSpecID returns the digest size of each algorithm the log uses.
func parseSpecID(spec []byte) (map[uint16]uint16, error) {
	r := tcgReader{b: spec}
	r.skip(len(specIDSignature))
	r.skip(4 + 1 + 1 + 1 + 1) // platform class, version minor/major, errata, uintn size
	n := r.u32()
	if r.err == nil && (n == 0 || n > 16) {
		return nil, fmt.Errorf("%w: tcg: Spec ID event lists %d algorithms", ErrMalformedLog, n)
	}
	sizes := make(map[uint16]uint16)
	for i := uint32(0); i < n && r.err == nil; i++ {
		alg, size := r.u16(), r.u16()
		if r.err == nil && (size == 0 || size > 64) {
			return nil, fmt.Errorf("%w: tcg: digest size %d for algorithm 0x%x", ErrMalformedLog, size, alg)
		}
		sizes[alg] = size
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: tcg: Spec ID event: %v", ErrMalformedLog, r.err)
	}
	if s, ok := sizes[algSHA256]; ok && s != 32 {
		return nil, fmt.Errorf("%w: tcg: SHA-256 digest size %d", ErrMalformedLog, s)
	}
	return sizes, nil
}

// tcgReader reads little-endian fields; after the first short read every
// read returns zero values and err stays set.
type tcgReader struct {
	b   []byte
	err error
}

func (r *tcgReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = fmt.Errorf("truncated: want %d bytes, have %d", n, len(r.b))
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *tcgReader) skip(n int) { r.take(n) }

func (r *tcgReader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *tcgReader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *tcgReader) bytes(n uint32) []byte {
	if uint64(n) > uint64(len(r.b)) {
		r.take(len(r.b) + 1) // records the error
		return nil
	}
	return r.take(int(n))
}
