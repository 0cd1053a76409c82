package swtpm

import (
	"errors"
	"fmt"
	"net"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/sccontainers/scc/attest/vtpm"
)

// OpenTPM connects to the TPM command socket of an emulator started
// WithCommandSocket. The caller must Close the returned TPM. The emulator
// serves one connection at a time: close it before a VM connects.
func (s *Swtpm) OpenTPM() (transport.TPMCloser, error) {
	if s.CmdPath == "" {
		return nil, errors.New("open tpm: swtpm was started without a command socket")
	}
	c, err := net.Dial("unix", s.CmdPath)
	if err != nil {
		return nil, fmt.Errorf("open tpm: %w", err)
	}
	return vtpm.NewStreamTPM(c.(*net.UnixConn)), nil
}
