package snp

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-sev-guest/abi"
)

func TestDecodeEvidence(t *testing.T) {
	signer := fakeAMD(t)
	good, err := signedEvidence(t, signer, fakeReport{}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{name: "round trip", in: string(good)},
		{name: "not JSON", in: "report", wantErr: true},
		{name: "unknown member", in: strings.Replace(string(good), `"tee"`, `"extra":1,"tee"`, 1), wantErr: true},
		{name: "trailing object", in: string(good) + "{}", wantErr: true},
		{name: "no tee", in: strings.Replace(string(good), `"tee":"snp"`, `"tee":""`, 1), wantErr: true},
		{name: "short report", in: `{"tee":"snp","report":"AAAA","cert_chain":{}}`, wantErr: true},
		{name: "huge certificate", in: `{"tee":"snp","report":"` + b64(make([]byte, abi.ReportSize)) + `","cert_chain":{"vcek":"` + b64(make([]byte, maxCertSize+1)) + `"}}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := DecodeEvidence([]byte(tc.in))
			if tc.wantErr {
				if !errors.Is(err, ErrMalformedEvidence) {
					t.Fatalf("DecodeEvidence() = %v, want %v", err, ErrMalformedEvidence)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeEvidence() = %v", err)
			}
			again, _ := ev.Marshal()
			if !bytes.Equal(again, good) {
				t.Fatal("evidence does not survive a decode/encode round trip")
			}
		})
	}
}

// FuzzDecodeEvidence feeds untrusted evidence through everything the key
// broker does with it before any signature is checked: JSON decoding, the
// report parser and the claims extraction.
func FuzzDecodeEvidence(f *testing.F) {
	signer := fakeAMD(f)
	good, err := signedEvidence(f, signer, fakeReport{}).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(realEvidence(f))
	f.Add([]byte(`{"tee":"snp","report":"","cert_chain":{}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeEvidence(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedEvidence) {
				t.Fatalf("DecodeEvidence error %v does not wrap ErrMalformedEvidence", err)
			}
			return
		}
		rep, err := ev.ParseReport()
		if err != nil {
			return
		}
		_, _ = ClaimsFromReport(TEE, rep)
		_ = (Policy{Measurements: [][]byte{make([]byte, abi.MeasurementSize)}, ReportData: make([]byte, abi.ReportDataSize)}).Check(rep)
	})
}

// FuzzParseReport feeds raw bytes to the report parser path: size check,
// abi.ReportToProto, policy and claims.
func FuzzParseReport(f *testing.F) {
	signer := fakeAMD(f)
	f.Add(signedEvidence(f, signer, fakeReport{}).Report)
	f.Add(readTestdata(f, "milan_report.bin"))
	f.Add(make([]byte, abi.ReportSize))
	f.Fuzz(func(t *testing.T, raw []byte) {
		rep, err := Evidence{TEE: TEE, Report: raw}.ParseReport()
		if err != nil {
			if !errors.Is(err, ErrMalformedEvidence) {
				t.Fatalf("ParseReport error %v does not wrap ErrMalformedEvidence", err)
			}
			return
		}
		if len(rep.GetMeasurement()) != abi.MeasurementSize || len(rep.GetReportData()) != abi.ReportDataSize {
			t.Fatalf("parsed report has wrong field sizes")
		}
		_, _ = ClaimsFromReport(TEE, rep)
	})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// realEvidence is the real Milan report of testdata with its VCEK.
func realEvidence(t testing.TB) []byte {
	t.Helper()
	b, err := Evidence{TEE: TEE, Report: readTestdata(t, "milan_report.bin"), CertChain: CertChain{VCEK: readTestdata(t, "milan_vcek.der")}}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
