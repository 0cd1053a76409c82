package tdx

import (
	"crypto/subtle"
	"fmt"

	"github.com/google/go-tdx-guest/abi"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/validate"
)

// tdAttributeDebug is TD_ATTRIBUTES bit 0 (TUD.DEBUG); the field is
// little-endian, so it is bit 0 of the first byte.
const tdAttributeDebug = 0x01

func isDebug(attrs []byte) bool {
	return len(attrs) > 0 && attrs[0]&tdAttributeDebug != 0
}

// checkPolicy checks the TD report in q against p. The fields a caller
// pins are compared here, in constant time and with typed errors; the
// validate package then checks what remains (the architecturally fixed
// XFAM and TD attribute bits, minimum SVNs, MRSEAM).
func checkPolicy(q *pb.QuoteV4, p Policy) error {
	b := q.GetTdQuoteBody()
	if isDebug(b.GetTdAttributes()) && !p.AllowDebug {
		return fmt.Errorf("%w: TD_ATTRIBUTES %x", ErrDebug, b.GetTdAttributes())
	}

	type field struct {
		name      string
		size      int
		got, want []byte
	}
	fields := []field{
		{"MRTD", abi.MrTdSize, b.GetMrTd(), p.MRTD},
		{"MRCONFIGID", abi.MrConfigIDSize, b.GetMrConfigId(), p.MRConfigID},
		{"MROWNER", abi.MrOwnerSize, b.GetMrOwner(), p.MROwner},
		{"MROWNERCONFIG", abi.MrOwnerConfigSize, b.GetMrOwnerConfig(), p.MROwnerConfig},
	}
	rtmrs := b.GetRtmrs()
	for i, want := range p.RTMRs {
		var got []byte
		if i < len(rtmrs) {
			got = rtmrs[i]
		}
		fields = append(fields, field{fmt.Sprintf("RTMR%d", i), abi.RtmrSize, got, want})
	}
	fields = append(fields, field{"REPORTDATA", abi.ReportDataSize, b.GetReportData(), p.ReportData})
	for _, f := range fields {
		if f.want == nil {
			continue
		}
		if len(f.want) != f.size {
			return fmt.Errorf("%w: expected %s is %d bytes, want %d", ErrPolicy, f.name, len(f.want), f.size)
		}
		if subtle.ConstantTimeCompare(f.got, f.want) != 1 {
			return &MismatchError{Field: f.name, Got: f.got, Want: f.want}
		}
	}

	vo := &validate.Options{
		HeaderOptions: validate.HeaderOptions{
			MinimumQeSvn:  p.MinimumQESVN,
			MinimumPceSvn: p.MinimumPCESVN,
		},
		TdQuoteBodyOptions: validate.TdQuoteBodyOptions{
			MinimumTeeTcbSvn: p.MinimumTeeTcbSvn,
			MrSeam:           p.MRSeam,
		},
	}
	if err := validate.TdxQuote(q, vo); err != nil {
		return fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	return nil
}
