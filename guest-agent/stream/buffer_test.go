package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
	"time"
)

func readAll(t *testing.T, b *Buffer, n int) []byte {
	t.Helper()
	out, err := drain(b, n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// drain reads b to eof with n-byte reads, checking each result's shape.
func drain(b *Buffer, n int) ([]byte, error) {
	var out []byte
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		data, eof, err := b.Read(ctx, n)
		cancel()
		if err != nil {
			return out, fmt.Errorf("read: %w", err)
		}
		if eof {
			if len(data) != 0 {
				return out, fmt.Errorf("eof result carries %d bytes", len(data))
			}
			return out, nil
		}
		if len(data) == 0 || len(data) > n {
			return out, fmt.Errorf("read returned %d bytes, want 1..%d", len(data), n)
		}
		out = append(out, data...)
	}
}

func TestReadLenCap(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want []string
	}{
		{name: "smaller than data", in: "abcdefg", n: 3, want: []string{"abc", "def", "g"}},
		{name: "larger than data", in: "abc", n: 100, want: []string{"abc"}},
		{name: "exact", in: "abcd", n: 2, want: []string{"ab", "cd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(0)
			if _, err := b.Write([]byte(tt.in)); err != nil {
				t.Fatal(err)
			}
			b.CloseWrite()
			for _, want := range tt.want {
				data, eof, err := b.Read(context.Background(), tt.n)
				if err != nil || eof || string(data) != want {
					t.Fatalf("Read = %q, %v, %v, want %q", data, eof, err, want)
				}
			}
			data, eof, err := b.Read(context.Background(), tt.n)
			if err != nil || !eof || len(data) != 0 {
				t.Fatalf("final Read = %q, %v, %v, want eof", data, eof, err)
			}
		})
	}
}

func TestReadBlocksUntilData(t *testing.T) {
	b := New(0)
	got := make(chan string, 1)
	go func() {
		data, _, _ := b.Read(context.Background(), 10)
		got <- string(data)
	}()
	select {
	case d := <-got:
		t.Fatalf("Read returned %q before any write", d)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := b.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if d != "hi" {
			t.Fatalf("Read = %q, want hi", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not wake on write")
	}
}

func TestReadCancelled(t *testing.T) {
	b := New(0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := b.Read(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read = %v, want deadline exceeded", err)
	}
}

func TestCancelledReadLeavesData(t *testing.T) {
	b := New(0)
	if _, err := b.Write([]byte("keep")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if data, _, err := b.Read(ctx, 10); err == nil || len(data) != 0 {
		t.Fatalf("cancelled Read = %q, %v; want an error and no data", data, err)
	}
	if got := readAll(t, b.closeAndReturn(), 10); string(got) != "keep" {
		t.Fatalf("data after cancelled read = %q, want keep", got)
	}
}

func (b *Buffer) closeAndReturn() *Buffer {
	b.CloseWrite()
	return b
}

func TestEOFOnlyAfterDrain(t *testing.T) {
	b := New(0)
	if _, err := b.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	b.CloseWrite()
	data, eof, err := b.Read(context.Background(), 4)
	if err != nil || eof || string(data) != "last" {
		t.Fatalf("Read = %q, %v, %v; want data before eof", data, eof, err)
	}
	if rest := readAll(t, b, 100); string(rest) != " words" {
		t.Fatalf("rest = %q", rest)
	}
}

func TestWriteBlocksWhenFull(t *testing.T) {
	b := New(4)
	done := make(chan error, 1)
	go func() {
		_, err := b.Write([]byte("abcdefgh"))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Write of 8 bytes into 4 returned early: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	type result struct {
		data []byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		d, err := drain(b, 3)
		got <- result{d, err}
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b.CloseWrite()
	if r := <-got; r.err != nil || string(r.data) != "abcdefgh" {
		t.Fatalf("read %q, %v", r.data, r.err)
	}
}

func TestDiscardUnblocksWriter(t *testing.T) {
	b := New(2)
	done := make(chan error, 1)
	go func() {
		_, err := b.Write([]byte("abcd"))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	b.Discard()
	select {
	case err := <-done:
		if !errors.Is(err, ErrDiscarded) {
			t.Fatalf("Write = %v, want ErrDiscarded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Write still blocked after Discard")
	}
	if _, eof, _ := b.Read(context.Background(), 1); !eof {
		t.Fatal("discarded buffer is not at eof")
	}
}

func TestClosed(t *testing.T) {
	if d := readAll(t, Closed(), 1); len(d) != 0 {
		t.Fatalf("Closed buffer returned %q", d)
	}
}

type eioReader struct{ r io.Reader }

func (e eioReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, &os.PathError{Op: "read", Path: "/dev/ptmx", Err: syscall.EIO}
	}
	return n, err
}

func TestFill(t *testing.T) {
	tests := []struct {
		name string
		r    func([]byte) io.Reader
	}{
		{name: "pipe-like EOF", r: func(p []byte) io.Reader { return bytes.NewReader(p) }},
		{name: "pty EIO", r: func(p []byte) io.Reader { return eioReader{bytes.NewReader(p)} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := bytes.Repeat([]byte("0123456789"), 1000)
			b := New(64)
			errc := make(chan error, 1)
			go func() { errc <- b.Fill(tt.r(want)) }()
			got := readAll(t, b, 7)
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, want %d", len(got), len(want))
			}
			if err := <-errc; err != nil {
				t.Fatalf("Fill = %v", err)
			}
		})
	}
}

func TestFillFromPipeKeepsOutputWrittenBeforeClose(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	b := New(0)
	go b.Fill(r)
	if _, err := w.Write([]byte("written just before exit")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if got := readAll(t, b, 5); string(got) != "written just before exit" {
		t.Fatalf("got %q", got)
	}
}
