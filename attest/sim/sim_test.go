package sim

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"

	"github.com/sccontainers/scc/attest/snp"
)

func TestNewAuthorityPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sim")
	a, err := NewAuthority(dir)
	if err != nil {
		t.Fatalf("NewAuthority(new) = %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, credentialsFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("authority file mode = %v, want 0600", fi.Mode().Perm())
	}
	b, err := NewAuthority(dir)
	if err != nil {
		t.Fatalf("NewAuthority(existing) = %v", err)
	}
	if a.Root() != b.Root() {
		t.Fatal("reloaded authority has another root")
	}
	other, err := NewAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if other.Root() == a.Root() {
		t.Fatal("two authorities share a root")
	}

	if err := os.WriteFile(filepath.Join(dir, credentialsFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewAuthority(dir); err == nil {
		t.Fatal("NewAuthority(corrupt file) succeeded")
	}
}

func TestNewAttesterRejectsBadCredentials(t *testing.T) {
	a, err := NewAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	creds := a.GuestCredentials()
	keyless := creds[:bytes.Index(creds, []byte("-----BEGIN EC PRIVATE KEY"))]
	other, _ := NewAuthority(t.TempDir())
	otherKey := other.GuestCredentials()[bytes.Index(other.GuestCredentials(), []byte("-----BEGIN EC PRIVATE KEY")):]
	for name, in := range map[string][]byte{
		"empty":                 nil,
		"no private key":        keyless,
		"key of another VCEK":   append(bytes.Clone(keyless), otherKey...),
		"unexpected block type": append(bytes.Clone(creds), []byte("-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n")...),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := NewAttester(in, Config{}); err == nil {
				t.Fatal("NewAttester succeeded")
			}
		})
	}
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	auth, err := NewAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var m, wrongM [abi.MeasurementSize]byte
	copy(m[:], "reference measurement")
	copy(wrongM[:], "something else")
	var rd, otherRD [abi.ReportDataSize]byte
	copy(rd[:], "session A")
	copy(otherRD[:], "session B")

	guest, err := NewAttester(auth.GuestCredentials(), Config{Measurement: m})
	if err != nil {
		t.Fatal(err)
	}
	evidence := func(a *Attester, rd [64]byte) snp.Evidence {
		t.Helper()
		ev, err := a.GetEvidence(ctx, rd)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	policy := snp.Policy{Measurements: [][]byte{m[:]}, ReportData: rd[:]}
	allow := []RootFingerprint{auth.Root()}
	// tcb8 has SNP firmware SVN 8 and microcode 0xd1.
	tcb8, err := kds.ComposeTCBParts(kds.TCBParts{BlSpl: 3, SnpSpl: 8, UcodeSpl: 0xd1})
	if err != nil {
		t.Fatal(err)
	}
	withMinTCB := func(snpSVN uint8) snp.Policy {
		p := policy
		p.MinimumTCB = kds.TCBParts{BlSpl: 3, SnpSpl: snpSVN, UcodeSpl: 0xd1}
		return p
	}

	tests := []struct {
		name    string
		ev      snp.Evidence
		opts    Options
		wantErr error
	}{
		{name: "allowed root", ev: evidence(guest, rd), opts: Options{AllowSim: allow, Policy: policy}},
		{name: "allowed among others", ev: evidence(guest, rd), opts: Options{AllowSim: []RootFingerprint{other.Root(), auth.Root()}, Policy: policy}},
		{name: "default options refuse sim", ev: evidence(guest, rd), opts: Options{Policy: policy}, wantErr: ErrSimNotAllowed},
		{name: "another sim root allowed", ev: evidence(guest, rd), opts: Options{AllowSim: []RootFingerprint{other.Root()}, Policy: policy}, wantErr: ErrSimNotAllowed},
		{name: "wrong measurement", ev: evidence(guest, rd), opts: Options{AllowSim: allow, Policy: snp.Policy{Measurements: [][]byte{wrongM[:]}, ReportData: rd[:]}}, wantErr: snp.ErrMeasurementMismatch},
		{name: "replayed for another session", ev: evidence(guest, otherRD), opts: Options{AllowSim: allow, Policy: policy}, wantErr: snp.ErrReportDataMismatch},
		{name: "debug guest", ev: evidence(auth.Attester(Config{Measurement: m, Policy: defaultGuestPolicy | 1<<19}), rd), opts: Options{AllowSim: allow, Policy: policy}, wantErr: snp.ErrDebugRefused},
		{name: "TCB at the minimum", ev: evidence(auth.Attester(Config{Measurement: m, TCB: uint64(tcb8)}), rd), opts: Options{AllowSim: allow, Policy: withMinTCB(8)}},
		{name: "stale TCB", ev: evidence(auth.Attester(Config{Measurement: m, TCB: uint64(tcb8)}), rd), opts: Options{AllowSim: allow, Policy: withMinTCB(9)}, wantErr: snp.ErrTCBTooLow},
		{name: "tampered report", ev: func() snp.Evidence {
			ev := evidence(guest, rd)
			ev.Report[0xc0] ^= 1 // HOST_DATA, covered by the signature
			return ev
		}(), opts: Options{AllowSim: allow, Policy: policy}, wantErr: snp.ErrSignature},
		{name: "VCEK of another authority", ev: func() snp.Evidence {
			ev := evidence(guest, rd)
			ev.CertChain.VCEK = evidence(other.Attester(Config{}), rd).CertChain.VCEK
			return ev
		}(), opts: Options{AllowSim: allow, Policy: policy}, wantErr: snp.ErrSignature},
		{name: "report signed by another authority's VCEK", ev: func() snp.Evidence {
			ev := evidence(guest, rd)
			ev.Report = evidence(other.Attester(Config{Measurement: m}), rd).Report
			return ev
		}(), opts: Options{AllowSim: allow, Policy: policy}, wantErr: snp.ErrSignature},
		{name: "expired chain", ev: evidence(guest, rd), opts: Options{AllowSim: allow, Policy: policy, Now: time.Now().AddDate(30, 0, 0)}, wantErr: snp.ErrSignature},
		{name: "labelled snp", ev: func() snp.Evidence {
			ev := evidence(guest, rd)
			ev.TEE = snp.TEE
			return ev
		}(), opts: Options{AllowSim: allow, Policy: policy}, wantErr: snp.ErrWrongTEE},
		{name: "no ARK", ev: func() snp.Evidence {
			ev := evidence(guest, rd)
			ev.CertChain.ARK = nil
			return ev
		}(), opts: Options{AllowSim: allow, Policy: policy}, wantErr: snp.ErrMalformedEvidence},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			claims, err := Verify(ctx, tc.ev, tc.opts)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Verify() = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify() = %v", err)
			}
			if claims.TEE != TEE {
				t.Fatalf("claims.TEE = %q, want %q", claims.TEE, TEE)
			}
		})
	}
}

// Simulated evidence must never pass as SNP hardware evidence, even when
// relabelled, and even when the SNP verifier is given the sim chain's
// certificates as its trusted roots: they are not shaped like AMD's.
func TestSimEvidenceFailsAsSNP(t *testing.T) {
	auth, err := NewAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var m [abi.MeasurementSize]byte
	var rd [abi.ReportDataSize]byte
	ev, err := auth.Attester(Config{Measurement: m}).GetEvidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	ev.TEE = snp.TEE
	_, err = snp.Verify(context.Background(), ev, snp.Options{Policy: snp.Policy{Measurements: [][]byte{m[:]}, ReportData: rd[:]}})
	if !errors.Is(err, snp.ErrSignature) {
		t.Fatalf("snp.Verify(relabelled sim evidence) = %v, want %v", err, snp.ErrSignature)
	}
}

func TestParseRootFingerprint(t *testing.T) {
	auth, err := NewAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root := auth.Root()
	colons := strings.ToUpper(root.String())
	var parts []string
	for i := 0; i < len(colons); i += 2 {
		parts = append(parts, colons[i:i+2])
	}
	tests := []struct {
		in      string
		wantErr bool
	}{
		{in: root.String()},
		{in: strings.Join(parts, ":")},
		{in: root.String()[:62], wantErr: true},
		{in: "zz" + root.String()[2:], wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRootFingerprint(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatal("ParseRootFingerprint succeeded")
				}
				return
			}
			if err != nil || got != root {
				t.Fatalf("ParseRootFingerprint() = %v, %v; want %v", got, err, root)
			}
		})
	}
	var back RootFingerprint
	text, _ := root.MarshalText()
	if err := back.UnmarshalText(text); err != nil || back != root {
		t.Fatalf("text round trip = %v, %v", back, err)
	}
}
