package swtpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

const (
	tpmHeaderSize = 10
	// maxResponse bounds what we read from the emulator; TPM responses
	// are at most a few KiB.
	maxResponse = 1 << 16
	// cmdTimeout bounds one TPM command so a wedged emulator cannot hang
	// the caller (transport.TPM has no context).
	cmdTimeout = 30 * time.Second
)

// OpenTPM connects to the TPM command socket of an emulator started
// WithCommandSocket. The caller must Close the returned TPM.
func (s *Swtpm) OpenTPM() (transport.TPMCloser, error) {
	if s.CmdPath == "" {
		return nil, errors.New("open tpm: swtpm was started without a command socket")
	}
	c, err := net.Dial("unix", s.CmdPath)
	if err != nil {
		return nil, fmt.Errorf("open tpm: %w", err)
	}
	return &streamTPM{conn: c}, nil
}

// streamTPM frames TPM commands on a stream socket: unlike go-tpm's
// read-once transports it reads the response size from the header and
// then exactly that many bytes, so a response split across reads is whole.
type streamTPM struct {
	mu   sync.Mutex // serialises commands: one command in flight
	conn net.Conn
}

var _ transport.TPMCloser = (*streamTPM)(nil)

func (t *streamTPM) Send(cmd []byte) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.conn.SetDeadline(time.Now().Add(cmdTimeout)); err != nil {
		return nil, fmt.Errorf("tpm send: %w", err)
	}
	if _, err := t.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("tpm send: %w", err)
	}
	hdr := make([]byte, tpmHeaderSize)
	if _, err := io.ReadFull(t.conn, hdr); err != nil {
		return nil, fmt.Errorf("tpm receive header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < tpmHeaderSize || size > maxResponse {
		return nil, fmt.Errorf("tpm receive: bad response size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(t.conn, rsp[tpmHeaderSize:]); err != nil {
		return nil, fmt.Errorf("tpm receive body: %w", err)
	}
	return rsp, nil
}

func (t *streamTPM) Close() error { return t.conn.Close() }
