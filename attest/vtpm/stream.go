package vtpm

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

const (
	tpmHeaderSize = 10
	// maxResponse bounds what is read from a TPM; responses are at most a
	// few KiB.
	maxResponse = 1 << 16
	// cmdTimeout bounds one TPM command so that a wedged TPM cannot hang
	// the caller (transport.TPM has no context).
	cmdTimeout = 30 * time.Second
)

// Stream is a byte stream to a TPM that takes deadlines: a unix socket to
// swtpm's command channel (net.Conn), or a guest's character device that
// carries TPM commands to one (*os.File of a virtio-serial port).
type Stream interface {
	io.ReadWriteCloser
	SetDeadline(t time.Time) error
}

// NewStreamTPM frames TPM commands on s. Unlike go-tpm's read-once
// transports it reads the response size from the header and then exactly
// that many bytes, so a response split across reads is whole. Closing the
// TPM closes s.
func NewStreamTPM(s Stream) transport.TPMCloser {
	return &streamTPM{s: s}
}

type streamTPM struct {
	mu sync.Mutex // serialises commands: one command in flight
	s  Stream
}

func (t *streamTPM) Send(cmd []byte) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.s.SetDeadline(time.Now().Add(cmdTimeout)); err != nil {
		return nil, fmt.Errorf("tpm send: %w", err)
	}
	if _, err := t.s.Write(cmd); err != nil {
		return nil, fmt.Errorf("tpm send: %w", err)
	}
	hdr := make([]byte, tpmHeaderSize)
	if _, err := io.ReadFull(t.s, hdr); err != nil {
		return nil, fmt.Errorf("tpm receive header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < tpmHeaderSize || size > maxResponse {
		return nil, fmt.Errorf("tpm receive: bad response size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(t.s, rsp[tpmHeaderSize:]); err != nil {
		return nil, fmt.Errorf("tpm receive body: %w", err)
	}
	return rsp, nil
}

func (t *streamTPM) Close() error { return t.s.Close() }
