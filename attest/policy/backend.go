package policy

import (
	"bytes"
	"encoding/hex"
	"errors"
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

func (o *Origin) validate() error {
	if o == nil {
		return nil
	}
	if !o.Fresh && len(o.Snapshots) == 0 {
		return errors.New("accepts no guest: set fresh, list snapshots, or leave origin out")
	}
	snaps, err := decodeHexList(o.Snapshots, SnapshotDigestSize)
	if err != nil {
		return fmt.Errorf("snapshots: %v", err)
	}
	for _, s := range snaps {
		// The monitor records a zero digest for a restore it was not
		// told about: that is never an approved snapshot.
		if bytes.Equal(s, make([]byte, SnapshotDigestSize)) {
			return errors.New("snapshots: the zero digest names no snapshot")
		}
	}
	return nil
}

// CheckOrigin checks how a verified vTPM guest started, and how often it
// was reused, against the policy's origin terms (vtpm). A policy without
// them accepts any start.
// Errors wrap ErrOriginNotAllowed, or vtpm.ErrPolicy when the evidence
// cannot tell how the guest started.
func (d Document) CheckOrigin(c *vtpm.Claims) error {
	o := d.Attestation[vtpm.TEE].Origin
	if o == nil {
		return nil
	}
	got, err := vtpm.OriginOf(c)
	if err != nil {
		return err
	}
	if g := got.Generation(); g > o.MaxGeneration {
		return fmt.Errorf("%w: the guest was reused after %d earlier tenants; the policy accepts at most %d (max_generation)", ErrOriginNotAllowed, g, o.MaxGeneration)
	}
	if got.Fresh() {
		if !o.Fresh {
			return fmt.Errorf("%w: the guest booted fresh; the policy accepts only guests restored from an approved snapshot", ErrOriginNotAllowed)
		}
		return nil
	}
	for _, r := range got.Restores {
		approved := false
		for _, s := range o.Snapshots {
			// Validated on parse: decoding cannot fail.
			want, _ := hex.DecodeString(s)
			approved = approved || bytes.Equal(want, r.Snapshot[:])
		}
		if !approved {
			return fmt.Errorf("%w: the guest was restored from snapshot %x, which the policy does not approve", ErrOriginNotAllowed, r.Snapshot)
		}
	}
	return nil
}
