package tdx

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"

	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"
)

// addPCK records the platform facts of the quote's PCK certificate, which
// verification has chained to a trusted root.
func (c *Claims) addPCK(q *pb.QuoteV4) error {
	chain := q.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	block, _ := pem.Decode(chain)
	if block == nil {
		return fmt.Errorf("%w: no PCK certificate", ErrMalformed)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("%w: PCK certificate: %v", ErrMalformed, err)
	}
	ext, err := pcs.PckCertificateExtensions(cert)
	if err != nil {
		return fmt.Errorf("%w: PCK certificate extensions: %v", ErrMalformed, err)
	}
	c.PPID, c.FMSPC = ext.PPID, ext.FMSPC
	c.PCESVN, c.CPUSVN = ext.TCB.PCESvn, bytes.Clone(ext.TCB.CPUSvn)
	return nil
}

// hexBytes encodes as a hex JSON string: measurements read as they are
// written in policies and in Intel's tools.
type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

// MarshalJSON encodes the claims with hex byte fields and snake_case
// names, as scc attest verify prints them and the key broker puts them in
// its tokens.
func (c *Claims) MarshalJSON() ([]byte, error) {
	status := "not checked (no collateral)"
	if c.TCBChecked {
		status = "UpToDate"
	}
	var rtmrs [4]hexBytes
	for i, r := range c.RTMRs {
		rtmrs[i] = r
	}
	return json.Marshal(struct {
		MRTD          hexBytes    `json:"mrtd"`
		RTMRs         [4]hexBytes `json:"rtmrs"`
		MRConfigID    hexBytes    `json:"mr_config_id"`
		MROwner       hexBytes    `json:"mr_owner"`
		MROwnerConfig hexBytes    `json:"mr_owner_config"`
		MRSeam        hexBytes    `json:"mr_seam"`
		ReportData    hexBytes    `json:"report_data"`
		TDAttributes  hexBytes    `json:"td_attributes"`
		XFAM          hexBytes    `json:"xfam"`
		TeeTcbSvn     hexBytes    `json:"tee_tcb_svn"`
		Debug         bool        `json:"debug"`
		QESVN         uint16      `json:"qe_svn"`
		PPID          string      `json:"ppid,omitempty"`
		FMSPC         string      `json:"fmspc"`
		PCESVN        uint16      `json:"pce_svn"`
		CPUSVN        hexBytes    `json:"cpu_svn"`
		TCBStatus     string      `json:"tcb_status"`
	}{
		c.MRTD, rtmrs, c.MRConfigID, c.MROwner, c.MROwnerConfig, c.MRSeam, c.ReportData[:],
		c.TDAttributes, c.XFAM, c.TeeTcbSvn, c.Debug, c.QESVN, c.PPID, c.FMSPC, c.PCESVN, c.CPUSVN, status,
	})
}
