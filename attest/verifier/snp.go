package verifier

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/google/go-sev-guest/kds"

	"github.com/sccontainers/scc/attest/policy"
	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
)

func verifySNP(ctx context.Context, tee string, data []byte, opts Options) (*Claims, policy.Values, error) {
	ev, err := snp.DecodeEvidence(data)
	if err != nil {
		return nil, nil, err
	}
	rep, err := ev.ParseReport()
	if err != nil {
		return nil, nil, err
	}
	rd := rep.GetReportData()
	if opts.ReportData != nil {
		rd = opts.ReportData[:]
	}
	var p snp.Policy
	if opts.Policy != nil {
		if p, err = opts.Policy.SNPPolicy(tee, rd); err != nil {
			return nil, nil, err
		}
	} else {
		// No policy: nothing to compare with but the report itself, so
		// only the signature and the chain decide.
		p = snp.Policy{Measurements: [][]byte{rep.GetMeasurement()}, ReportData: rd, AllowDebug: true, AllowMigrationAgent: true}
	}
	var sc *snp.Claims
	if tee == sim.TEE {
		var roots []sim.RootFingerprint
		if opts.Policy != nil {
			roots = opts.Policy.SimRoots()
		}
		sc, err = sim.Verify(ctx, ev, sim.Options{AllowSim: roots, Now: now(opts), Policy: p})
	} else {
		sc, err = snp.Verify(ctx, ev, snp.Options{TrustedRoots: opts.SNPRoots, Getter: opts.SNPGetter, Now: now(opts), Policy: p})
	}
	if err != nil {
		return nil, nil, err
	}
	tcb := kds.DecomposeTCBVersion(kds.TCBVersion(sc.ReportedTCB))
	c := &Claims{
		TEE:         tee,
		Measurement: sc.Measurement,
		ReportData:  sc.ReportData,
		Debug:       sc.Debug,
		PlatformID:  sc.ChipID,
		TCB:         SNPTCB{Bootloader: tcb.BlSpl, TEE: tcb.TeeSpl, SNP: tcb.SnpSpl, Microcode: tcb.UcodeSpl},
		SNP:         sc,
	}
	values := policy.Values{}
	for name, h := range map[string]string{"measurement": sc.Measurement, "host_data": sc.HostData} {
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, nil, fmt.Errorf("claims: %w", err)
		}
		values[name] = b
	}
	return c, values, nil
}
