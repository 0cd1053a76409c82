package verifier

import (
	"encoding/hex"
	"fmt"

	"github.com/sccontainers/scc/attest/policy"
	"github.com/sccontainers/scc/attest/vtpm"
)

func verifyVTPM(data []byte, opts Options) (*Claims, policy.Values, error) {
	ev, err := vtpm.DecodeEvidence(data)
	if err != nil {
		return nil, nil, err
	}
	var nonce []byte
	if opts.ReportData != nil {
		nonce = vtpm.QualifyingData(*opts.ReportData)
	} else if nonce, err = ev.QuoteNonce(); err != nil {
		return nil, nil, err
	}
	vo := vtpm.VerifyOptions{Nonce: nonce}
	if opts.Policy != nil {
		if vo, err = opts.Policy.VTPMOptions(nonce); err != nil {
			return nil, nil, err
		}
	}
	vc, err := vtpm.Verify(ev, vo)
	if err != nil {
		return nil, nil, err
	}
	if opts.Policy != nil {
		if err := opts.Policy.CheckOrigin(vc); err != nil {
			return nil, nil, err
		}
	}
	c := &Claims{
		TEE:        vtpm.TEE,
		ReportData: hex.EncodeToString(vc.Nonce),
		PlatformID: hex.EncodeToString(vc.AKDigest[:]),
		VTPM:       vc,
	}
	if o, err := vtpm.OriginOf(vc); err == nil {
		c.Origin = &Origin{Fresh: o.Fresh(), Generation: o.Generation()}
		for _, r := range o.Restores {
			c.Origin.RestoredFrom = append(c.Origin.RestoredFrom, hex.EncodeToString(r.Snapshot[:]))
		}
	}
	values := policy.Values{}
	for p, v := range vc.PCRs {
		values[fmt.Sprintf("pcr%d", p)] = v
	}
	return c, values, nil
}
