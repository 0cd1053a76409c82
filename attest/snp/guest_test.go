package snp

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	sgtest "github.com/google/go-sev-guest/testing"
)

func TestAttesterRoundTrip(t *testing.T) {
	signer := fakeAMD(t)
	certs, err := signer.CertTableBytes()
	if err != nil {
		t.Fatal(err)
	}
	var rd [abi.ReportDataSize]byte
	copy(rd[:], "session binding")
	var m [abi.MeasurementSize]byte
	m[47] = 0x42
	resp := &sgtest.GetReportResponse{}
	copy(resp.Resp.Data[:], rawReport(t, fakeReport{measurement: m, reportData: rd}))
	qp := &sgtest.QuoteProvider{Device: &sgtest.Device{
		ReportDataRsp: map[string]any{hex.EncodeToString(rd[:]): resp},
		Certs:         certs,
		Signer:        signer,
		SevProduct:    abi.DefaultSevProduct(),
	}}
	a := &Attester{Provider: qp}
	if a.TEE() != "snp" {
		t.Fatalf("TEE() = %q", a.TEE())
	}
	data, err := a.Evidence(context.Background(), rd)
	if err != nil {
		t.Fatalf("Evidence() = %v", err)
	}
	ev, err := DecodeEvidence(data)
	if err != nil {
		t.Fatalf("DecodeEvidence() = %v", err)
	}
	if !bytes.Equal(ev.CertChain.VCEK, signer.Vcek.Raw) || !bytes.Equal(ev.CertChain.ARK, signer.Ark.Raw) {
		t.Fatal("evidence does not carry the host's certificate table")
	}
	opts := Options{
		TrustedRoots: trustedRoots(signer),
		Now:          chainCreated.Add(time.Hour),
		Policy:       Policy{Measurements: [][]byte{m[:]}, ReportData: rd[:]},
	}
	if _, err := Verify(context.Background(), ev, opts); err != nil {
		t.Fatalf("Verify(evidence from Attester) = %v", err)
	}

	// The provider only answers for the report data it was given, like a
	// device would sign only what it is asked to.
	var other [abi.ReportDataSize]byte
	if _, err := a.Evidence(context.Background(), other); err == nil {
		t.Fatal("Evidence() for unknown report data succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Evidence(ctx, rd); !errors.Is(err, context.Canceled) {
		t.Fatalf("Evidence(cancelled ctx) = %v", err)
	}
}
