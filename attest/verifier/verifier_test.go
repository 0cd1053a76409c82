package verifier

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/policy"
	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
	"github.com/sccontainers/scc/attest/tdx"
	"github.com/sccontainers/scc/attest/vtpm"
)

func parse(t *testing.T, doc string) *policy.Document {
	t.Helper()
	d, err := policy.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return &d
}

// The real Milan report: measurement, zero HOST_DATA, TCB 2/0/5/68, debug.
const (
	milanMeasurement = "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
	tdxMRTD          = "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb"
	tdxRTMR2         = "8652f0caaba7e215ea442dc36a4499d8fec3362f3a0b2ca151cbe4b3e6466fe59c7368b3c2287fc7c3bf5c924eb4424e"
)

var (
	zeroHostData = strings.Repeat("00", 32)
	zero48       = strings.Repeat("00", 48)
)

func TestPolicyOnVendorEvidence(t *testing.T) {
	ctx := context.Background()
	snpEv := milanEvidence(t, milanReport(t))
	tdxEv := tdxEvidence(t, tdxQuote(t))
	tests := []struct {
		name    string
		tee     string
		ev      []byte
		doc     string
		want    []string // workloads
		wantErr error
		detail  string
	}{
		{name: "snp workload matched", tee: snp.TEE, ev: snpEv,
			doc:  `{"attestation":{"snp":{"allow":true,"allow_debug":true,"min_tcb":{"bootloader":2,"tee":0,"snp":5,"microcode":68}}},"workloads":{"demo":{"snp":{"measurements":["` + milanMeasurement + `"],"host_data":"` + zeroHostData + `"}}}}`,
			want: []string{"demo"}},
		{name: "snp stale TCB", tee: snp.TEE, ev: snpEv,
			doc:     `{"attestation":{"snp":{"allow":true,"allow_debug":true,"measurements":["` + milanMeasurement + `"],"min_tcb":{"bootloader":2,"tee":0,"snp":8,"microcode":68}}}}`,
			wantErr: snp.ErrTCBTooLow, detail: "SNP reported TCB below minimum"},
		{name: "snp debug refused", tee: snp.TEE, ev: snpEv,
			doc:     `{"attestation":{"snp":{"allow":true,"measurements":["` + milanMeasurement + `"]}}}`,
			wantErr: snp.ErrDebugRefused},
		{name: "snp measurement of no workload", tee: snp.TEE, ev: snpEv,
			doc:     `{"attestation":{"snp":{"allow":true,"allow_debug":true}},"workloads":{"other":{"snp":{"measurements":["` + strings.Repeat("ab", 48) + `"]}}}}`,
			wantErr: snp.ErrMeasurementMismatch},
		{name: "snp init data of no workload", tee: snp.TEE, ev: snpEv,
			doc:     `{"attestation":{"snp":{"allow":true,"allow_debug":true}},"workloads":{"other":{"snp":{"measurements":["` + milanMeasurement + `"],"host_data":"` + strings.Repeat("ab", 32) + `"}}}}`,
			wantErr: policy.ErrReferenceMismatch, detail: "workload other: host_data 0000"},
		{name: "snp not allowed", tee: snp.TEE, ev: snpEv,
			doc:     `{"attestation":{"tdx":{"allow":true,"mrtd":["` + tdxMRTD + `"]}}}`,
			wantErr: policy.ErrTEENotAllowed},
		{name: "tdx workload matched", tee: tdx.TEE, ev: tdxEv,
			doc:  `{"attestation":{"tdx":{"allow":true,"min_tee_tcb_svn":"03000400000000000000000000000000"}},"workloads":{"demo":{"tdx":{"mrtd":["` + tdxMRTD + `"],"rtmrs":{"2":["` + tdxRTMR2 + `"]},"mr_config_id":"` + zero48 + `"}}}}`,
			want: []string{"demo"}},
		{name: "tdx RTMR of no workload", tee: tdx.TEE, ev: tdxEv,
			doc:     `{"attestation":{"tdx":{"allow":true,"mrtd":["` + tdxMRTD + `"],"rtmrs":{"2":["` + zero48 + `"]}}}}`,
			wantErr: policy.ErrReferenceMismatch, detail: "rtmr2 " + tdxRTMR2 + " is not a reference value"},
		{name: "tdx TEE TCB SVN too low", tee: tdx.TEE, ev: tdxEv,
			doc:     `{"attestation":{"tdx":{"allow":true,"mrtd":["` + tdxMRTD + `"],"min_tee_tcb_svn":"03000500000000000000000000000000"}}}`,
			wantErr: tdx.ErrPolicy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Policy: parse(t, tc.doc), Now: snpAt}
			if tc.tee == tdx.TEE {
				opts.Now, opts.TDXSkipTCBCheck = tdxAt, true
			}
			c, err := Verify(ctx, tc.tee, tc.ev, opts)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.detail) {
					t.Fatalf("Verify = %v, want %v mentioning %q", err, tc.wantErr, tc.detail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(c.Workloads, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("workloads = %v, want %v", c.Workloads, tc.want)
			}
		})
	}

	t.Run("report data binding", func(t *testing.T) {
		var rd [64]byte
		copy(rd[:], []byte{1, 2, 3, 4, 5})
		if _, err := Verify(ctx, snp.TEE, snpEv, Options{Now: snpAt, ReportData: &rd}); err != nil {
			t.Fatalf("Verify(the report's own REPORT_DATA) = %v", err)
		}
		rd[5] = 6
		if _, err := Verify(ctx, snp.TEE, snpEv, Options{Now: snpAt, ReportData: &rd}); !errors.Is(err, snp.ErrReportDataMismatch) {
			t.Fatalf("Verify(other REPORT_DATA) = %v, want %v", err, snp.ErrReportDataMismatch)
		}
		if _, err := Verify(ctx, tdx.TEE, tdxEv, Options{Now: tdxAt, TDXSkipTCBCheck: true, ReportData: &rd}); !errors.Is(err, tdx.ErrReportDataMismatch) {
			t.Fatalf("Verify(tdx, other REPORT_DATA) = %v, want %v", err, tdx.ErrReportDataMismatch)
		}
	})
}

func TestSimAndVTPM(t *testing.T) {
	ctx := context.Background()
	auth, err := sim.NewAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var m [48]byte
	copy(m[:], "simulated guest")
	var rd [64]byte
	copy(rd[:], "session")
	simEv, err := auth.Attester(sim.Config{Measurement: m}).Evidence(ctx, rd)
	if err != nil {
		t.Fatal(err)
	}
	vtpmEv := readTestdata(t, "..", "vtpm", "testdata", "evidence.json")
	ev, err := vtpm.DecodeEvidence(vtpmEv)
	if err != nil {
		t.Fatal(err)
	}
	akDigest := vtpm.AKDigest(ev.AKPublic)
	ak := hex.EncodeToString(akDigest[:])
	pcr10 := hex.EncodeToString(ev.PCRs[10])
	recordedRD := [64]byte([]byte("scc recorded vtpm evidence: a fixed 64-byte report data value...."))

	simDoc := `{"attestation":{"sim":{"allow":true,"roots":["` + auth.Root().String() + `"],"measurements":["` + hex.EncodeToString(m[:]) + `"]}}}`
	vtpmDoc := `{"attestation":{"vtpm":{"allow":true,"trusted_aks":["` + ak + `"]}},"workloads":{"web":{"vtpm":{"pcrs":{"10":["` + pcr10 + `"]}}},"db":{"vtpm":{"pcrs":{"10":["` + strings.Repeat("00", 32) + `"]}}}}}`
	tests := []struct {
		name    string
		tee     string
		ev      []byte
		opts    Options
		want    string // workloads
		wantErr error
	}{
		{name: "sim with its root named", tee: sim.TEE, ev: simEv, opts: Options{Policy: parse(t, simDoc), ReportData: &rd}},
		{name: "sim without a policy", tee: sim.TEE, ev: simEv, wantErr: sim.ErrSimNotAllowed},
		{name: "sim with a policy for snp only", tee: sim.TEE, ev: simEv, opts: Options{Policy: parse(t, `{"attestation":{"snp":{"allow":true,"measurements":["`+hex.EncodeToString(m[:])+`"]}}}`)}, wantErr: sim.ErrSimNotAllowed},
		{name: "sim as snp", tee: snp.TEE, ev: simEv, wantErr: ErrWrongTEE},
		{name: "vtpm with its AK pinned", tee: vtpm.TEE, ev: vtpmEv, opts: Options{Policy: parse(t, vtpmDoc)}, want: "web"},
		{name: "vtpm bound to its session", tee: vtpm.TEE, ev: vtpmEv, opts: Options{Policy: parse(t, vtpmDoc), ReportData: &recordedRD}, want: "web"},
		{name: "vtpm bound to another session", tee: vtpm.TEE, ev: vtpmEv, opts: Options{Policy: parse(t, vtpmDoc), ReportData: &rd}, wantErr: vtpm.ErrNonceMismatch},
		{name: "vtpm without a policy", tee: vtpm.TEE, ev: vtpmEv, wantErr: vtpm.ErrUntrustedAK},
		{name: "vtpm with another AK pinned", tee: vtpm.TEE, ev: vtpmEv, opts: Options{Policy: parse(t, strings.Replace(vtpmDoc, ak, strings.Repeat("00", 32), 1))}, wantErr: vtpm.ErrUntrustedAK},
		{name: "unknown TEE", tee: "sgx", ev: simEv, wantErr: ErrUnknownTEE},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Verify(ctx, tc.tee, tc.ev, tc.opts)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Verify = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.TEE != tc.tee || strings.Join(c.Workloads, ",") != tc.want {
				t.Fatalf("claims tee %q workloads %v, want %q %q", c.TEE, c.Workloads, tc.tee, tc.want)
			}
		})
	}
}

func TestClaimsJSON(t *testing.T) {
	c, err := Verify(context.Background(), snp.TEE, milanEvidence(t, milanReport(t)), Options{Now: snpAt})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tee", "measurement", "report_data", "debug", "platform_id", "tcb", "snp"} {
		if _, ok := m[k]; !ok {
			t.Errorf("claims JSON lacks %q: %s", k, b)
		}
	}
	if m["measurement"] != milanMeasurement || m["tcb"].(map[string]any)["microcode"] != float64(68) {
		t.Fatalf("claims JSON = %s", b)
	}
}

// The broker's binding is the same value a guest computes.
func TestReportDataIsTheSessionBinding(t *testing.T) {
	auth, err := sim.NewAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	guest := auth.Attester(sim.Config{})
	key := mustKey(t)
	rd, err := attest.ReportData("nonce", key)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := guest.Evidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	doc := parse(t, `{"attestation":{"sim":{"allow":true,"roots":["`+auth.Root().String()+`"],"measurements":["`+zero48+`"]}}}`)
	c, err := Verify(context.Background(), sim.TEE, ev, Options{Policy: doc, ReportData: &rd})
	if err != nil || c.ReportData != hex.EncodeToString(rd[:]) {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
}
