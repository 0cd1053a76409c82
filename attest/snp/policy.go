package snp

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
)

// Policy is what a verifier requires of a report once its signature holds.
// The zero Policy is not usable: a report is only accepted against at least
// one reference measurement and the REPORT_DATA of the verifier's session.
type Policy struct {
	// Measurements are the accepted MEASUREMENT values (48 bytes each),
	// e.g. launch digests computed with attest/snp/measure.
	Measurements [][]byte
	// ReportData is the expected REPORT_DATA (64 bytes), normally
	// attest.ReportData of the session nonce and the guest's key.
	ReportData []byte
	// HostData, if set (32 bytes), is the expected HOST_DATA.
	HostData []byte
	// AllowDebug accepts guests whose policy lets the host debug them,
	// i.e. read their memory. Never for production secrets.
	AllowDebug bool
	// AllowMigrationAgent accepts guests whose policy allows a migration agent.
	AllowMigrationAgent bool
	// MinimumTCB is the component-wise minimum of REPORTED_TCB.
	MinimumTCB kds.TCBParts
}

// Claims are the facts a verified report establishes.
type Claims struct {
	TEE            string `json:"tee"`
	Version        uint32 `json:"version"`
	GuestSVN       uint32 `json:"guest_svn"`
	Policy         uint64 `json:"policy"`
	Debug          bool   `json:"debug"`
	MigrationAgent bool   `json:"migration_agent"`
	VMPL           uint32 `json:"vmpl"`
	Measurement    string `json:"measurement"` // hex
	HostData       string `json:"host_data"`   // hex
	ReportData     string `json:"report_data"` // hex
	ChipID         string `json:"chip_id"`     // hex
	ReportedTCB    uint64 `json:"reported_tcb"`
	SigningKey     string `json:"signing_key"` // "VCEK" or "VLEK"
}

func (p Policy) validateSelf() error {
	if len(p.Measurements) == 0 {
		return fmt.Errorf("%w: no reference measurement", ErrInvalidPolicy)
	}
	for _, m := range p.Measurements {
		if len(m) != abi.MeasurementSize {
			return fmt.Errorf("%w: reference measurement is %d bytes, want %d", ErrInvalidPolicy, len(m), abi.MeasurementSize)
		}
	}
	if len(p.ReportData) != abi.ReportDataSize {
		return fmt.Errorf("%w: expected REPORT_DATA is %d bytes, want %d", ErrInvalidPolicy, len(p.ReportData), abi.ReportDataSize)
	}
	if p.HostData != nil && len(p.HostData) != abi.HostDataSize {
		return fmt.Errorf("%w: expected HOST_DATA is %d bytes, want %d", ErrInvalidPolicy, len(p.HostData), abi.HostDataSize)
	}
	return nil
}

// Check applies the policy to a parsed report whose signature the caller
// has already verified. Digests are compared in constant time.
func (p Policy) Check(rep *spb.Report) error {
	if err := p.validateSelf(); err != nil {
		return err
	}
	gp, err := abi.ParseSnpPolicy(rep.GetPolicy())
	if err != nil {
		return fmt.Errorf("%w: guest policy: %v", ErrMalformedEvidence, err)
	}
	if gp.Debug && !p.AllowDebug {
		return ErrDebugRefused
	}
	if gp.MigrateMA && !p.AllowMigrationAgent {
		return ErrMigrationAgentRefused
	}
	if subtle.ConstantTimeCompare(rep.GetReportData(), p.ReportData) != 1 {
		return ErrReportDataMismatch
	}
	matched := 0
	for _, m := range p.Measurements {
		// No early exit: the time taken does not depend on which entry matched.
		matched |= subtle.ConstantTimeCompare(rep.GetMeasurement(), m)
	}
	if matched != 1 {
		return fmt.Errorf("%w: got %x", ErrMeasurementMismatch, rep.GetMeasurement())
	}
	if p.HostData != nil && subtle.ConstantTimeCompare(rep.GetHostData(), p.HostData) != 1 {
		return fmt.Errorf("%w: got %x", ErrHostDataMismatch, rep.GetHostData())
	}
	reported := kds.DecomposeTCBVersion(kds.TCBVersion(rep.GetReportedTcb()))
	if !kds.TCBPartsLE(p.MinimumTCB, reported) {
		return fmt.Errorf("%w: reported %s; minimum %s", ErrTCBTooLow, tcbString(reported), tcbString(p.MinimumTCB))
	}
	return nil
}

// validateOptions translates the policy for go-sev-guest's validate
// package, which adds the checks this package does not repeat: TCB values
// consistent with each other and with the VCEK certificate, chip ID
// matching the certificate, reserved policy bits.
func (p Policy) validateOptions() *validate.Options {
	return &validate.Options{
		GuestPolicy: abi.SnpPolicy{
			SMT:        true,
			CXLAllowed: true,
			Debug:      p.AllowDebug,
			MigrateMA:  p.AllowMigrationAgent,
		},
		ReportData:                p.ReportData,
		HostData:                  p.HostData,
		MinimumTCB:                p.MinimumTCB,
		PermitProvisionalFirmware: true,
	}
}

// ClaimsFromReport extracts the claims of a report that has been verified.
func ClaimsFromReport(tee string, rep *spb.Report) (*Claims, error) {
	gp, err := abi.ParseSnpPolicy(rep.GetPolicy())
	if err != nil {
		return nil, fmt.Errorf("%w: guest policy: %v", ErrMalformedEvidence, err)
	}
	info, err := abi.ParseSignerInfo(rep.GetSignerInfo())
	if err != nil {
		return nil, fmt.Errorf("%w: signer info: %v", ErrMalformedEvidence, err)
	}
	return &Claims{
		TEE:            tee,
		Version:        rep.GetVersion(),
		GuestSVN:       rep.GetGuestSvn(),
		Policy:         rep.GetPolicy(),
		Debug:          gp.Debug,
		MigrationAgent: gp.MigrateMA,
		VMPL:           rep.GetVmpl(),
		Measurement:    hex.EncodeToString(rep.GetMeasurement()),
		HostData:       hex.EncodeToString(rep.GetHostData()),
		ReportData:     hex.EncodeToString(rep.GetReportData()),
		ChipID:         hex.EncodeToString(rep.GetChipId()),
		ReportedTCB:    rep.GetReportedTcb(),
		SigningKey:     info.SigningKey.String(),
	}, nil
}

// tcbString names the SVNs of the TCB components SNP reports.
func tcbString(t kds.TCBParts) string {
	return fmt.Sprintf("bootloader %d, tee %d, snp %d, microcode %d", t.BlSpl, t.TeeSpl, t.SnpSpl, t.UcodeSpl)
}
