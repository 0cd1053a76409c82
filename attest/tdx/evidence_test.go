package tdx

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/google/go-tdx-guest/client"
)

type fakeProvider struct {
	quote []byte
	err   error
	block chan struct{} // if set, GetRawQuote waits on it
}

func (p fakeProvider) GetRawQuote([64]byte) ([]byte, error) {
	if p.block != nil {
		<-p.block
	}
	return p.quote, p.err
}

func TestGetEvidenceFrom(t *testing.T) {
	var sampleData [64]byte
	copy(sampleData[:], sampleBody(t).GetReportData())
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		qp   fakeProvider
		data [64]byte
		want error
	}{
		{name: "quote over our data", qp: fakeProvider{quote: sampleQuote()}, data: sampleData},
		{name: "quote over other data", qp: fakeProvider{quote: sampleQuote()}, data: [64]byte{1}, want: ErrReportDataMismatch},
		{name: "not a quote", qp: fakeProvider{quote: []byte("junk")}, data: sampleData, want: ErrMalformed},
		{name: "provider fails", qp: fakeProvider{err: os.ErrPermission}, data: sampleData, want: os.ErrPermission},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := GetEvidenceFrom(ctx, tc.qp, tc.data)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("GetEvidenceFrom = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// The evidence verifies and carries the data asked for.
			claims, err := Verify(ev.Quote, Options{SkipTCBCheck: true, Now: sampleNow, Policy: Policy{ReportData: tc.data[:]}})
			if err != nil || claims.ReportData != tc.data {
				t.Fatalf("Verify(evidence) = %v, %v", claims, err)
			}
		})
	}

	t.Run("context ends first", func(t *testing.T) {
		block := make(chan struct{})
		defer close(block)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := GetEvidenceFrom(cctx, fakeProvider{quote: sampleQuote(), block: block}, sampleData); !errors.Is(err, context.Canceled) {
			t.Fatalf("GetEvidenceFrom = %v, want context.Canceled", err)
		}
	})
}

func TestGetEvidenceOutsideTD(t *testing.T) {
	if _, err := os.Stat(guestDevice); err == nil {
		t.Skip("this machine is a TD: " + guestDevice + " exists")
	}
	if p, _ := client.GetQuoteProvider(); p != nil && p.IsSupported() == nil {
		t.Skip("this machine offers TDX quotes through configfs-tsm")
	}
	if _, err := GetEvidence(context.Background(), [64]byte{}); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("GetEvidence outside a TD = %v, want ErrNoDevice", err)
	}
}
