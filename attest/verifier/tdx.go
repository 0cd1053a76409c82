package verifier

import (
	"encoding/hex"
	"fmt"

	"github.com/sccontainers/scc/attest/policy"
	"github.com/sccontainers/scc/attest/tdx"
)

func verifyTDX(data []byte, opts Options) (*Claims, policy.Values, error) {
	ev, err := tdx.DecodeEvidence(data)
	if err != nil {
		return nil, nil, err
	}
	var rd []byte
	if opts.ReportData != nil {
		rd = opts.ReportData[:]
	}
	p := tdx.Policy{ReportData: rd, AllowDebug: true}
	if opts.Policy != nil {
		if p, err = opts.Policy.TDXPolicy(rd); err != nil {
			return nil, nil, err
		}
	}
	topts := tdx.Options{
		TrustedRoots: opts.TDXRoots,
		Collateral:   opts.TDXCollateral,
		SkipTCBCheck: opts.TDXSkipTCBCheck,
		Now:          now(opts),
		Policy:       p,
	}
	if opts.TDXCollateral != nil {
		topts.CheckRevocations = opts.TDXCollateral.Revocations()
	}
	tc, err := tdx.Verify(ev.Quote, topts)
	if err != nil {
		return nil, nil, err
	}
	status := "not checked"
	if tc.TCBChecked {
		status = "UpToDate"
	}
	c := &Claims{
		TEE:         tdx.TEE,
		Measurement: hex.EncodeToString(tc.MRTD),
		ReportData:  hex.EncodeToString(tc.ReportData[:]),
		Debug:       tc.Debug,
		PlatformID:  tc.PPID,
		TCB:         TDXTCB{TeeTcbSvn: hex.EncodeToString(tc.TeeTcbSvn), PCESVN: tc.PCESVN, QESVN: tc.QESVN, Status: status},
		TDX:         tc,
	}
	values := policy.Values{"mrtd": tc.MRTD, "mr_config_id": tc.MRConfigID}
	for i, r := range tc.RTMRs {
		values[fmt.Sprintf("rtmr%d", i)] = r
	}
	return c, values, nil
}
