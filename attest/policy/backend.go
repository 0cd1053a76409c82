package policy

import (
	"fmt"

	"github.com/google/go-sev-guest/kds"

	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
	"github.com/sccontainers/scc/attest/tdx"
	"github.com/sccontainers/scc/attest/vtpm"
)

// The backends check the platform terms of a TEE's policy; these
// translate them. reportData is the binding the evidence must carry.

// SNPPolicy returns the snp (or sim) verifier policy: the accepted launch
// measurements (LaunchMeasurements), the binding, debug, migration agent
// and minimum TCB. HOST_DATA is left to Match, with the other reference
// values.
func (d Document) SNPPolicy(tee string, reportData []byte) (snp.Policy, error) {
	tp := d.Attestation[tee]
	ms, err := d.LaunchMeasurements(tee)
	if err != nil {
		return snp.Policy{}, err
	}
	p := snp.Policy{
		Measurements:        ms,
		ReportData:          reportData,
		AllowDebug:          tp.AllowDebug,
		AllowMigrationAgent: tp.AllowMigrationAgent,
	}
	if tp.MinTCB != nil {
		p.MinimumTCB = kds.TCBParts{BlSpl: tp.MinTCB.Bootloader, TeeSpl: tp.MinTCB.TEE, SnpSpl: tp.MinTCB.SNP, UcodeSpl: tp.MinTCB.Microcode}
	}
	return p, nil
}

// SimRoots returns the simulated roots the policy accepts; none unless
// sim is allowed.
func (d Document) SimRoots() []sim.RootFingerprint {
	tp := d.Attestation[sim.TEE]
	if !tp.Allow {
		return nil
	}
	return tp.Roots
}

// TDXPolicy returns the tdx verifier policy: the binding, the owner and
// TDX module fields, the minimum SVNs and debug. MRTD, RTMRs and
// MRCONFIGID are left to Match.
func (d Document) TDXPolicy(reportData []byte) (tdx.Policy, error) {
	tp := d.Attestation[tdx.TEE]
	p := tdx.Policy{
		ReportData:    reportData,
		MinimumQESVN:  tp.MinQESVN,
		MinimumPCESVN: tp.MinPCESVN,
		AllowDebug:    tp.AllowDebug,
	}
	for _, f := range []struct {
		v    string
		size int
		dst  *[]byte
	}{
		{tp.MROwner, MeasurementSize, &p.MROwner},
		{tp.MROwnerConfig, MeasurementSize, &p.MROwnerConfig},
		{tp.MRSeam, MeasurementSize, &p.MRSeam},
		{tp.MinTeeTcbSvn, teeTcbSvnSize, &p.MinimumTeeTcbSvn},
	} {
		if f.v == "" {
			continue
		}
		b, err := decodeHex(f.v, f.size)
		if err != nil {
			return tdx.Policy{}, fmt.Errorf("%w: tdx: %v", ErrInvalid, err)
		}
		*f.dst = b
	}
	return p, nil
}

// VTPMOptions returns the vtpm verifier options: the nonce the quote must
// carry and the trusted attestation keys. PCR values are left to Match.
func (d Document) VTPMOptions(nonce []byte) (vtpm.VerifyOptions, error) {
	tp := d.Attestation[vtpm.TEE]
	opts := vtpm.VerifyOptions{Nonce: nonce}
	if !tp.Allow {
		return opts, nil
	}
	aks, err := decodeHexList(tp.TrustedAKs, AKDigestSize)
	if err != nil {
		return opts, fmt.Errorf("%w: vtpm: %v", ErrInvalid, err)
	}
	for _, ak := range aks {
		opts.TrustedAKs = append(opts.TrustedAKs, [32]byte(ak))
	}
	return opts, nil
}
