package verifycli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-sev-guest/abi"

	"github.com/sccontainers/scc/attest/policy"
	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
	"github.com/sccontainers/scc/attest/tdx"
	"github.com/sccontainers/scc/attest/vtpm"
)

// Real vendor evidence (../snp/testdata, ../tdx/testdata) and the times
// inside its certificates' and collateral's validity.
var (
	milanReport   = filepath.Join("..", "snp", "testdata", "milan_report.bin")
	milanVCEK     = filepath.Join("..", "snp", "testdata", "milan_vcek.der")
	tdxQuote      = filepath.Join("..", "tdx", "testdata", "tdx_prod_quote_SPR_E4.dat")
	tdxCollateral = filepath.Join("..", "tdx", "testdata", "collateral")
	vtpmEvidence  = filepath.Join("..", "vtpm", "testdata", "evidence.json")
)

const (
	snpAt            = "2023-01-01T00:00:00Z"
	tdxAt            = "2023-07-01T01:00:00Z"
	milanMeasurement = "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
	tdxMRTD          = "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb"
)

// run runs the command and decodes the claims it prints.
func run(t *testing.T, args ...string) (map[string]any, error) {
	t.Helper()
	var out bytes.Buffer
	err := Run(context.Background(), args, &out)
	if err != nil {
		if out.Len() != 0 {
			t.Fatalf("failed run printed %q", out.String())
		}
		return nil, err
	}
	var claims map[string]any
	if err := json.Unmarshal(out.Bytes(), &claims); err != nil {
		t.Fatalf("output %q is not JSON: %v", out.String(), err)
	}
	return claims, nil
}

func write(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVendorEvidence(t *testing.T) {
	vcekPEM := write(t, "vcek.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: read(t, milanVCEK)}))
	evJSON, err := (&snp.Evidence{TEE: snp.TEE, Report: read(t, milanReport), CertChain: snp.CertChain{VCEK: read(t, milanVCEK)}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	snpJSON := write(t, "snp.json", evJSON)

	for _, args := range [][]string{
		{"--tee", "snp", "--evidence", milanReport, "--cert", milanVCEK, "--at", snpAt},
		{"--tee", "snp", "--evidence", milanReport, "--cert", vcekPEM, "--at", snpAt},
		{"--tee", "snp", "--evidence", snpJSON, "--at", snpAt},
	} {
		t.Run("snp "+strings.Join(args[3:], " "), func(t *testing.T) {
			c, err := run(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			if c["tee"] != "snp" || c["measurement"] != milanMeasurement || c["debug"] != true ||
				!strings.HasPrefix(c["report_data"].(string), "0102030405000000") ||
				!strings.HasPrefix(c["platform_id"].(string), "3ac3fe21e13fb099") ||
				c["tcb"].(map[string]any)["snp"] != float64(5) || c["snp"].(map[string]any)["policy"] != float64(0xb0000) {
				t.Fatalf("claims = %v", c)
			}
		})
	}
	t.Run("tdx without collateral: TCB not checked", func(t *testing.T) {
		c, err := run(t, "--tee", "tdx", "--evidence", tdxQuote, "--at", tdxAt)
		if err != nil {
			t.Fatal(err)
		}
		if c["measurement"] != tdxMRTD || c["tcb"].(map[string]any)["status"] != "not checked" || c["tdx"].(map[string]any)["fmspc"] != "50806f000000" {
			t.Fatalf("claims = %v", c)
		}
	})
	t.Run("tdx with Intel's collateral: platform below every TCB level", func(t *testing.T) {
		_, err := run(t, "--tee", "tdx", "--evidence", tdxQuote, "--collateral", tdxCollateral, "--at", tdxAt)
		if !errors.Is(err, tdx.ErrVerification) || !strings.Contains(err.Error(), "no matching TCB level found") {
			t.Fatalf("Run = %v", err)
		}
	})
	t.Run("snp after the VCEK expired", func(t *testing.T) {
		_, err := run(t, "--tee", "snp", "--evidence", milanReport, "--cert", milanVCEK, "--at", "2030-01-01T00:00:00Z")
		if !errors.Is(err, snp.ErrSignature) || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("Run = %v", err)
		}
	})
}

// Flipped bits in the signed part of the real evidence fail through the
// command too. The exhaustive flip of every bit is in package verifier;
// here one bit in every 16th byte, rotating through bit positions.
func TestVendorEvidenceBitFlips(t *testing.T) {
	for _, tc := range []struct {
		tee, path string
		end       int
		args      []string
		wantErrs  []error
	}{
		{tee: "snp", path: milanReport, end: 0x2a0, args: []string{"--cert", milanVCEK, "--at", snpAt}, wantErrs: []error{snp.ErrSignature, snp.ErrMalformedEvidence}},
		{tee: "tdx", path: tdxQuote, end: bytes.Index(read(t, tdxQuote), []byte("-----BEGIN")) - 6, args: []string{"--at", tdxAt}, wantErrs: []error{tdx.ErrVerification, tdx.ErrMalformed}},
	} {
		t.Run(tc.tee, func(t *testing.T) {
			orig := read(t, tc.path)
			path := filepath.Join(t.TempDir(), "evidence")
			for i := 0; i < tc.end; i += 16 {
				flipped := bytes.Clone(orig)
				flipped[i] ^= 1 << ((i / 16) % 8)
				if err := os.WriteFile(path, flipped, 0o644); err != nil {
					t.Fatal(err)
				}
				_, err := run(t, append([]string{"--tee", tc.tee, "--evidence", path}, tc.args...)...)
				if err == nil {
					t.Fatalf("byte %#x flipped: verified", i)
				}
				if !errors.Is(err, tc.wantErrs[0]) && !errors.Is(err, tc.wantErrs[1]) {
					t.Fatalf("byte %#x flipped: %v, want one of %v", i, err, tc.wantErrs)
				}
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	auth, err := sim.NewAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var m [48]byte
	copy(m[:], "simulated measurement")
	var rd [64]byte
	copy(rd[:], "recorded outside a session")
	simEv, err := auth.Attester(sim.Config{Measurement: m}).Evidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	simPath := write(t, "sim.json", simEv)
	ev, err := vtpm.DecodeEvidence(read(t, vtpmEvidence))
	if err != nil {
		t.Fatal(err)
	}
	ak := vtpm.AKDigest(ev.AKPublic)

	policyFile := func(doc string) string {
		if _, err := policy.Parse([]byte(doc)); err != nil {
			t.Fatalf("test policy: %v", err)
		}
		return write(t, "policy.json", []byte(doc))
	}
	tests := []struct {
		name      string
		args      []string
		doc       string
		workloads string
		wantErr   error
		detail    string
	}{
		{name: "snp workload", args: []string{"--tee", "snp", "--evidence", milanReport, "--cert", milanVCEK, "--at", snpAt},
			doc:       `{"attestation":{"snp":{"allow":true,"allow_debug":true,"min_tcb":{"bootloader":2,"tee":0,"snp":5,"microcode":68}}},"workloads":{"demo":{"snp":{"measurements":["` + milanMeasurement + `"]}}}}`,
			workloads: "demo"},
		{name: "snp stale TCB", args: []string{"--tee", "snp", "--evidence", milanReport, "--cert", milanVCEK, "--at", snpAt},
			doc:     `{"attestation":{"snp":{"allow":true,"allow_debug":true,"measurements":["` + milanMeasurement + `"],"min_tcb":{"bootloader":2,"tee":0,"snp":6,"microcode":68}}}}`,
			wantErr: snp.ErrTCBTooLow, detail: "reported bootloader 2, tee 0, snp 5, microcode 68; minimum bootloader 2, tee 0, snp 6, microcode 68"},
		{name: "snp not allowed", args: []string{"--tee", "snp", "--evidence", milanReport, "--cert", milanVCEK, "--at", snpAt},
			doc: `{}`, wantErr: policy.ErrTEENotAllowed},
		{name: "tdx workload", args: []string{"--tee", "tdx", "--evidence", tdxQuote, "--at", tdxAt},
			doc:       `{"attestation":{"tdx":{"allow":true}},"workloads":{"demo":{"tdx":{"mrtd":["` + tdxMRTD + `"],"mr_config_id":"` + strings.Repeat("00", 48) + `"}}}}`,
			workloads: "demo"},
		{name: "sim with its root named", args: []string{"--tee", "sim", "--evidence", simPath},
			doc: `{"attestation":{"sim":{"allow":true,"roots":["` + auth.Root().String() + `"],"measurements":["` + hex.EncodeToString(m[:]) + `"]}}}`},
		{name: "sim without a policy", args: []string{"--tee", "sim", "--evidence", simPath}, wantErr: sim.ErrSimNotAllowed},
		{name: "vtpm with its AK pinned", args: []string{"--tee", "vtpm", "--evidence", vtpmEvidence},
			doc:       `{"attestation":{"vtpm":{"allow":true,"trusted_aks":["` + hex.EncodeToString(ak[:]) + `"]}},"workloads":{"web":{"vtpm":{"pcrs":{"10":["` + hex.EncodeToString(ev.PCRs[10]) + `"]}}}}}`,
			workloads: "web"},
		{name: "vtpm without a policy", args: []string{"--tee", "vtpm", "--evidence", vtpmEvidence},
			wantErr: vtpm.ErrUntrustedAK, detail: hex.EncodeToString(ak[:])},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.doc != "" {
				args = append(args, "--policy", policyFile(tc.doc))
			}
			c, err := run(t, args...)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.detail) {
					t.Fatalf("Run = %v, want %v mentioning %q", err, tc.wantErr, tc.detail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			if w, ok := c["workloads"].([]any); ok {
				for _, x := range w {
					got = append(got, x.(string))
				}
			}
			if strings.Join(got, ",") != tc.workloads {
				t.Fatalf("workloads = %v, want %q", got, tc.workloads)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"-h"}, &out); err != nil {
		t.Fatalf("Run(-h) = %v", err)
	}
	for _, flag := range []string{"-tee", "-evidence", "-cert", "-collateral", "-at", "-policy"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("help does not describe %s:\n%s", flag, out.String())
		}
	}
}

func TestUsage(t *testing.T) {
	auth, err := sim.NewAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherVCEK := func() string {
		ev, err := auth.Attester(sim.Config{}).GetEvidence(context.Background(), [64]byte{})
		if err != nil {
			t.Fatal(err)
		}
		return write(t, "other.der", ev.CertChain.VCEK)
	}()
	tests := []struct {
		name string
		args []string
		want error // nil: any error
	}{
		{"no flags", nil, ErrUsage},
		{"no evidence", []string{"--tee", "snp"}, ErrUsage},
		{"unknown flag", []string{"--tee", "snp", "--evidence", milanReport, "--roots", "x"}, ErrUsage},
		{"extra argument", []string{"--tee", "snp", "--evidence", milanReport, "more"}, ErrUsage},
		{"cert for tdx", []string{"--tee", "tdx", "--evidence", tdxQuote, "--cert", milanVCEK}, ErrUsage},
		{"collateral for snp", []string{"--tee", "snp", "--evidence", milanReport, "--collateral", tdxCollateral}, ErrUsage},
		{"bad time", []string{"--tee", "snp", "--evidence", milanReport, "--at", "yesterday"}, ErrUsage},
		{"unknown TEE", []string{"--tee", "sgx", "--evidence", milanReport}, nil},
		{"missing file", []string{"--tee", "snp", "--evidence", "/nonexistent"}, os.ErrNotExist},
		{"truncated report", []string{"--tee", "snp", "--evidence", write(t, "short", read(t, milanReport)[:abi.ReportSize-1])}, nil},
		{"raw vtpm", []string{"--tee", "vtpm", "--evidence", milanReport}, nil},
		{"two VCEKs", []string{"--tee", "snp", "--evidence", milanReport, "--cert", milanVCEK, "--cert", otherVCEK}, nil},
		{"not a certificate", []string{"--tee", "snp", "--evidence", milanReport, "--cert", tdxQuote}, nil},
		{"bad policy", []string{"--tee", "snp", "--evidence", milanReport, "--policy", write(t, "p.json", []byte(`{"attestation":{"snp":{"allow":true}}}`))}, policy.ErrInvalid},
		{"bad collateral dir", []string{"--tee", "tdx", "--evidence", tdxQuote, "--collateral", t.TempDir()}, os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, tc.args...)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Run = %v, want %v", err, tc.want)
			}
		})
	}
}
