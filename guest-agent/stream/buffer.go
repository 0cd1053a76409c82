// Package stream buffers a process's output until the host reads it.
//
// The host pulls output with ReadStdout/ReadStderr requests; between two
// requests the bytes wait in a Buffer. A full Buffer stops reading from the
// process (like a full pipe), so memory stays bounded.
package stream

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
)

// ErrDiscarded is returned by Write once the Buffer was discarded.
var ErrDiscarded = errors.New("stream discarded")

// DefaultMax is the capacity used when New is given none.
const DefaultMax = 1 << 20

// Buffer is an in-memory byte queue with one writer (the copier from the
// process) and any number of readers (host requests).
type Buffer struct {
	max int

	mu        sync.Mutex
	data      []byte        // unread bytes, guarded by mu
	closed    bool          // no more bytes will come, guarded by mu
	discarded bool          // the reader is gone: drop everything, guarded by mu
	changed   chan struct{} // closed and replaced on every change, guarded by mu
}

// New returns an empty Buffer holding at most max unread bytes (DefaultMax
// if max <= 0).
func New(max int) *Buffer {
	if max <= 0 {
		max = DefaultMax
	}
	return &Buffer{max: max, changed: make(chan struct{})}
}

// Closed returns a Buffer that is already at end of stream: the stream of a
// process whose output is not forwarded.
func Closed() *Buffer {
	b := New(1)
	b.CloseWrite()
	return b
}

// notify wakes every goroutine waiting for a change. mu must be held.
func (b *Buffer) notify() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Write appends p, blocking while the Buffer is full. It fails only once the
// Buffer was discarded or closed for writing.
func (b *Buffer) Write(p []byte) (int, error) {
	n := 0
	b.mu.Lock()
	defer b.mu.Unlock()
	for n < len(p) {
		if b.discarded {
			return n, ErrDiscarded
		}
		if b.closed {
			return n, os.ErrClosed
		}
		free := b.max - len(b.data)
		if free == 0 {
			wait := b.changed
			b.mu.Unlock()
			<-wait
			b.mu.Lock()
			continue
		}
		k := min(free, len(p)-n)
		b.data = append(b.data, p[n:n+k]...)
		n += k
		b.notify()
	}
	return n, nil
}

// CloseWrite marks the end of the stream: readers get the bytes still
// buffered, then end of stream.
func (b *Buffer) CloseWrite() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		b.notify()
	}
}

// Discard drops the buffered bytes and makes Write fail, so the copier
// stops; readers see end of stream.
func (b *Buffer) Discard() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.discarded = true
	b.closed = true
	b.data = nil
	b.notify()
}

// Read blocks until bytes are buffered or the stream ended, and returns at
// most n bytes (n must be positive). eof is true only when the stream ended
// and every byte was read; such a result carries no data, so a caller that
// stops at eof never drops output. Read consumes nothing once ctx is done.
func (b *Buffer) Read(ctx context.Context, n int) (data []byte, eof bool, err error) {
	if n <= 0 {
		return nil, false, errors.New("read length must be positive")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		// A reader that gave up must not take bytes it will never
		// deliver.
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		if len(b.data) > 0 {
			k := min(n, len(b.data))
			data = append([]byte(nil), b.data[:k]...)
			// Copy down rather than reslice, so the backing array
			// does not grow without bound.
			rest := copy(b.data, b.data[k:])
			b.data = b.data[:rest]
			b.notify()
			return data, false, nil
		}
		if b.closed {
			return nil, true, nil
		}
		wait := b.changed
		b.mu.Unlock()
		select {
		case <-wait:
			b.mu.Lock()
		case <-ctx.Done():
			b.mu.Lock()
			return nil, false, ctx.Err()
		}
	}
}

// Fill copies r into b until r ends, then closes b for writing. A pty
// master reports EIO once the terminal's other side is closed: that is end
// of stream too. Fill stops early if b is discarded.
func (b *Buffer) Fill(r io.Reader) error {
	defer b.CloseWrite()
	_, err := io.Copy(b, r)
	if err == nil || errors.Is(err, syscall.EIO) || errors.Is(err, ErrDiscarded) || errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}
