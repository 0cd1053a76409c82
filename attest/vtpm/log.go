package vtpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// EventType labels what an event measured. The values for scc's own log
// are chosen by its writer (the trusted monitor); for a TCG log they are
// the TCG PC Client event types (EV_*).
type EventType uint32

// Event is one measurement: Digest was extended into PCR (SHA-256 bank).
type Event struct {
	PCR    int
	Type   EventType
	Digest [32]byte
	Data   []byte
}

// NumPCRs is the number of PCRs of a PC Client TPM.
const NumPCRs = 24

// Limits on a decoded Log, so that hostile input cannot make a verifier
// allocate or work without bound.
const (
	// MaxEventData is the largest Data of one event.
	MaxEventData = 1 << 20
	// MaxEvents is the largest number of events in one log.
	MaxEvents = 1 << 16
)

// ErrMalformedLog is returned when an event log cannot be decoded.
var ErrMalformedLog = errors.New("vtpm: malformed event log")

// logMagic opens every encoded Log; it also tells Verify the log is in
// this format rather than the TCG one.
var logMagic = [8]byte{'S', 'C', 'C', 'E', 'V', 'L', 'O', 'G'}

const (
	logVersion      = 1
	logHeaderSize   = len(logMagic) + 4
	eventHeaderSize = 4 + 4 + sha256.Size + 4
)

// Log is scc's measurement log: the events its trusted monitor extends
// into the TPM, in order. It is safe for concurrent use.
//
// An event's digest is SHA-256(type || data), type as 4 bytes big-endian:
// binding the type means a verifier cannot be shown one kind of event
// relabelled as another, and the data is authenticated by the PCR.
//
// Binary encoding (MarshalBinary), all integers big-endian:
//
//	header: magic "SCCEVLOG" (8 bytes) | version uint16 = 1 | reserved uint16 = 0
//	then, until the end of the input, records of
//	  pcr    uint32   0..23
//	  type   uint32
//	  digest [32]byte SHA-256(type || data)
//	  length uint32   at most MaxEventData
//	  data   [length]byte
//
// UnmarshalBinary rejects unknown versions, out-of-range fields, trailing
// partial records and any record whose digest is not that of its data.
type Log struct {
	mu     sync.Mutex
	events []Event // guarded by mu
}

// EventDigest is the digest Log records (and the caller must extend into
// the PCR) for an event.
func EventDigest(eventType EventType, data []byte) [32]byte {
	h := sha256.New()
	var t [4]byte
	binary.BigEndian.PutUint32(t[:], uint32(eventType))
	h.Write(t[:])
	h.Write(data)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// Append records an event and returns its digest, which the caller must
// extend into pcr (ExtendPCR) for the log to stay in step with the TPM.
// data is copied.
func (l *Log) Append(pcr int, eventType EventType, data []byte) ([32]byte, error) {
	if pcr < 0 || pcr >= NumPCRs {
		return [32]byte{}, fmt.Errorf("append event: pcr %d out of range", pcr)
	}
	if len(data) > MaxEventData {
		return [32]byte{}, fmt.Errorf("append event: %d bytes of data, limit %d", len(data), MaxEventData)
	}
	ev := Event{PCR: pcr, Type: eventType, Digest: EventDigest(eventType, data), Data: bytes.Clone(data)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) >= MaxEvents {
		return [32]byte{}, fmt.Errorf("append event: log is full (%d events)", MaxEvents)
	}
	l.events = append(l.events, ev)
	return ev.Digest, nil
}

// Filter drops the events keep refuses and keeps the others in order: a
// log that is to be replayed into a new TPM without some of them. The
// TPM the log was in step with no longer is.
func (l *Log) Filter(keep func(Event) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kept := l.events[:0]
	for _, ev := range l.events {
		if keep(ev) {
			kept = append(kept, ev)
		}
	}
	clear(l.events[len(kept):])
	l.events = kept
}

// Events returns a copy of the recorded events in order.
func (l *Log) Events() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Event, len(l.events))
	for i, ev := range l.events {
		ev.Data = bytes.Clone(ev.Data)
		out[i] = ev
	}
	return out
}

// Replay returns the SHA-256 PCR values that extending every event, in
// order, into PCRs starting at zero yields. Only PCRs with events appear.
func (l *Log) Replay() map[int][32]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return replay(l.events, nil)
}

// replay extends events into PCRs that start at initial (or zero).
func replay(events []Event, initial map[int][32]byte) map[int][32]byte {
	pcrs := make(map[int][32]byte)
	for _, ev := range events {
		cur, ok := pcrs[ev.PCR]
		if !ok {
			cur = initial[ev.PCR]
		}
		pcrs[ev.PCR] = extend(cur, ev.Digest)
	}
	return pcrs
}

// extend computes a TPM2_PCR_Extend: SHA-256(pcr || digest).
func extend(pcr, digest [32]byte) [32]byte {
	var buf [64]byte
	copy(buf[:32], pcr[:])
	copy(buf[32:], digest[:])
	return sha256.Sum256(buf[:])
}

// MarshalBinary encodes the log as documented on Log.
func (l *Log) MarshalBinary() ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	size := logHeaderSize
	for _, ev := range l.events {
		size += eventHeaderSize + len(ev.Data)
	}
	b := make([]byte, 0, size)
	b = append(b, logMagic[:]...)
	b = binary.BigEndian.AppendUint16(b, logVersion)
	b = binary.BigEndian.AppendUint16(b, 0)
	for _, ev := range l.events {
		b = binary.BigEndian.AppendUint32(b, uint32(ev.PCR))
		b = binary.BigEndian.AppendUint32(b, uint32(ev.Type))
		b = append(b, ev.Digest[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(ev.Data)))
		b = append(b, ev.Data...)
	}
	return b, nil
}

// UnmarshalBinary replaces the log's events with those decoded from b.
// b is untrusted: see Log for what is rejected.
func (l *Log) UnmarshalBinary(b []byte) error {
	events, err := decodeLog(b)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = events
	return nil
}

// isSCCLog reports whether b starts like an encoded Log.
func isSCCLog(b []byte) bool {
	return len(b) >= len(logMagic) && bytes.Equal(b[:len(logMagic)], logMagic[:])
}

func decodeLog(b []byte) ([]Event, error) {
	if len(b) < logHeaderSize || !isSCCLog(b) {
		return nil, fmt.Errorf("%w: missing header", ErrMalformedLog)
	}
	if v := binary.BigEndian.Uint16(b[8:10]); v != logVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrMalformedLog, v)
	}
	if r := binary.BigEndian.Uint16(b[10:12]); r != 0 {
		return nil, fmt.Errorf("%w: reserved header field is %d", ErrMalformedLog, r)
	}
	b = b[logHeaderSize:]
	var events []Event
	for len(b) > 0 {
		if len(events) >= MaxEvents {
			return nil, fmt.Errorf("%w: more than %d events", ErrMalformedLog, MaxEvents)
		}
		if len(b) < eventHeaderSize {
			return nil, fmt.Errorf("%w: truncated record %d", ErrMalformedLog, len(events))
		}
		var ev Event
		pcr := binary.BigEndian.Uint32(b[0:4])
		if pcr >= NumPCRs {
			return nil, fmt.Errorf("%w: record %d: pcr %d out of range", ErrMalformedLog, len(events), pcr)
		}
		ev.PCR = int(pcr)
		ev.Type = EventType(binary.BigEndian.Uint32(b[4:8]))
		copy(ev.Digest[:], b[8:40])
		n := binary.BigEndian.Uint32(b[40:44])
		if n > MaxEventData {
			return nil, fmt.Errorf("%w: record %d: %d bytes of data, limit %d", ErrMalformedLog, len(events), n, MaxEventData)
		}
		b = b[eventHeaderSize:]
		if uint32(len(b)) < n {
			return nil, fmt.Errorf("%w: record %d: truncated data", ErrMalformedLog, len(events))
		}
		ev.Data = bytes.Clone(b[:n])
		b = b[n:]
		if EventDigest(ev.Type, ev.Data) != ev.Digest {
			return nil, fmt.Errorf("%w: record %d: digest does not match data", ErrMalformedLog, len(events))
		}
		events = append(events, ev)
	}
	return events, nil
}
