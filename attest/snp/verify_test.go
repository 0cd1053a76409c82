package snp

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
)

func TestVerify(t *testing.T) {
	signer := fakeAMD(t)
	roots := trustedRoots(signer)
	now := chainCreated.Add(24 * time.Hour)

	var measurement, other [abi.MeasurementSize]byte
	measurement[0], other[0] = 0xaa, 0xbb
	var nonceA, nonceB [abi.ReportDataSize]byte
	nonceA[0], nonceB[0] = 1, 2
	var hostData [abi.HostDataSize]byte
	hostData[31] = 7

	good := fakeReport{measurement: measurement, reportData: nonceA, hostData: hostData}
	basePolicy := Policy{Measurements: [][]byte{measurement[:]}, ReportData: nonceA[:]}

	tests := []struct {
		name    string
		report  fakeReport
		mutate  func(*Evidence)
		opts    func(*Options)
		wantErr error
	}{
		{name: "good"},
		{name: "good with VLEK", report: fakeReport{measurement: measurement, reportData: nonceA, signer: abi.VlekReportSigner}},
		{name: "second reference measurement matches", opts: func(o *Options) {
			o.Policy.Measurements = [][]byte{other[:], measurement[:]}
		}},
		{name: "wrong measurement", opts: func(o *Options) {
			o.Policy.Measurements = [][]byte{other[:]}
		}, wantErr: ErrMeasurementMismatch},
		{name: "debug refused", report: fakeReport{measurement: measurement, reportData: nonceA, policy: defaultPolicy | 1<<19}, wantErr: ErrDebugRefused},
		{name: "debug allowed", report: fakeReport{measurement: measurement, reportData: nonceA, policy: defaultPolicy | 1<<19}, opts: func(o *Options) {
			o.Policy.AllowDebug = true
		}},
		{name: "migration agent refused", report: fakeReport{measurement: measurement, reportData: nonceA, policy: defaultPolicy | 1<<18}, wantErr: ErrMigrationAgentRefused},
		{name: "report made for another session", report: fakeReport{measurement: measurement, reportData: nonceB}, wantErr: ErrReportDataMismatch},
		{name: "host data matches", opts: func(o *Options) { o.Policy.HostData = hostData[:] }},
		{name: "host data mismatch", opts: func(o *Options) { o.Policy.HostData = make([]byte, abi.HostDataSize) }, wantErr: ErrHostDataMismatch},
		{name: "TCB too low", opts: func(o *Options) { o.Policy.MinimumTCB = kds.TCBParts{SnpSpl: 3} }, wantErr: ErrTCBTooLow},
		{name: "forged: report altered after signing", mutate: func(ev *Evidence) {
			ev.Report[0x90] ^= 1 // first byte of MEASUREMENT
		}, opts: func(o *Options) {
			m := measurement
			m[0] ^= 1
			o.Policy.Measurements = [][]byte{m[:]}
		}, wantErr: ErrSignature},
		{name: "forged: signature altered", mutate: func(ev *Evidence) { ev.Report[0x2a0] ^= 1 }, wantErr: ErrSignature},
		{name: "VCEK expired", opts: func(o *Options) { o.Now = chainCreated.AddDate(8, 0, 0) }, wantErr: ErrSignature},
		{name: "VCEK not yet valid", opts: func(o *Options) { o.Now = chainCreated.Add(-time.Hour) }, wantErr: ErrSignature},
		{name: "test chain against AMD's real roots", opts: func(o *Options) { o.TrustedRoots = nil }, wantErr: ErrSignature},
		{name: "no VCEK in evidence and no getter", mutate: func(ev *Evidence) { ev.CertChain.VCEK = nil }, wantErr: ErrSignature},
		{name: "evidence labelled as another TEE", mutate: func(ev *Evidence) { ev.TEE = "sim" }, wantErr: ErrWrongTEE},
		{name: "truncated report", mutate: func(ev *Evidence) { ev.Report = ev.Report[:100] }, wantErr: ErrMalformedEvidence},
		{name: "policy without measurement", opts: func(o *Options) { o.Policy.Measurements = nil }, wantErr: ErrInvalidPolicy},
		{name: "policy without report data", opts: func(o *Options) { o.Policy.ReportData = nil }, wantErr: ErrInvalidPolicy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := good
			if tc.report != (fakeReport{}) {
				f = tc.report
			}
			ev := signedEvidence(t, signer, f)
			if tc.mutate != nil {
				tc.mutate(&ev)
			}
			opts := Options{TrustedRoots: roots, Now: now, Policy: basePolicy}
			if tc.opts != nil {
				tc.opts(&opts)
			}
			claims, err := Verify(context.Background(), ev, opts)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Verify() error = %v, want %v", err, tc.wantErr)
				}
				if claims != nil {
					t.Fatalf("Verify() returned claims with error %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify() = %v", err)
			}
			if claims.TEE != TEE || claims.Measurement != hex.EncodeToString(f.measurement[:]) || claims.ReportData != hex.EncodeToString(f.reportData[:]) {
				t.Fatalf("claims = %+v, want TEE %q measurement %x", claims, TEE, f.measurement)
			}
			wantKey := "VCEK"
			if f.signer == abi.VlekReportSigner {
				wantKey = "VLEK"
			}
			if claims.SigningKey != wantKey {
				t.Fatalf("claims.SigningKey = %q, want %q", claims.SigningKey, wantKey)
			}
		})
	}
}

func TestVerifyDoesNotTrustEvidenceRoots(t *testing.T) {
	// The evidence carries the fake ARK/ASK, but the verifier is left with
	// AMD's embedded roots: the chain the guest sends must not be trusted.
	signer := fakeAMD(t)
	var m [abi.MeasurementSize]byte
	ev := signedEvidence(t, signer, fakeReport{measurement: m})
	if !bytes.Equal(ev.CertChain.ARK, signer.Ark.Raw) {
		t.Fatal("test setup: evidence lacks the fake ARK")
	}
	_, err := Verify(context.Background(), ev, Options{Now: chainCreated.Add(time.Hour), Policy: Policy{
		Measurements: [][]byte{m[:]}, ReportData: make([]byte, abi.ReportDataSize),
	}})
	if !errors.Is(err, ErrSignature) {
		t.Fatalf("Verify() = %v, want %v", err, ErrSignature)
	}
}
