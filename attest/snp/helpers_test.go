package snp

import (
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	sgtest "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify/trust"
)

// chainCreated is when the fake AMD chain starts to be valid; its VCEK
// expires seven years later.
var chainCreated = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// defaultPolicy is an SNP guest policy with SMT allowed and the reserved
// bit 17 set, as QEMU launches guests by default.
const defaultPolicy = 0x30000

type fakeReport struct {
	measurement [abi.MeasurementSize]byte
	reportData  [abi.ReportDataSize]byte
	hostData    [abi.HostDataSize]byte
	policy      uint64
	signer      abi.ReportSigner
	tcb         uint64
}

// fakeAMD builds a chain shaped like AMD's (RSA-PSS ARK and ASK/ASVK,
// ECDSA P-384 VCEK and VLEK with KDS extensions) from go-sev-guest's
// test-only keys.
func fakeAMD(t testing.TB) *sgtest.AmdSigner {
	t.Helper()
	s, err := sgtest.DefaultTestOnlyCertChain(sgtest.GetProductName(), chainCreated)
	if err != nil {
		t.Fatalf("fake AMD chain: %v", err)
	}
	return s
}

// trustedRoots makes the fake chain's ARK and ASK/ASVK the only trusted roots.
func trustedRoots(s *sgtest.AmdSigner) map[string][]*trust.AMDRootCerts {
	line := kds.ProductLine(abi.DefaultSevProduct())
	r := trust.AMDRootCertsProduct(line)
	r.ProductCerts = &trust.ProductCerts{Ark: s.Ark, Ask: s.Ask, Asvk: s.Asvk}
	return map[string][]*trust.AMDRootCerts{line: {r}}
}

// rawReport lays out an unsigned version-2 report.
func rawReport(t testing.TB, f fakeReport) []byte {
	t.Helper()
	raw := sgtest.CreateRawReport(&sgtest.TestReportOptions{
		ReportData: f.reportData[:],
		SignerInfo: abi.SignerInfo{SigningKey: f.signer},
	})
	rep, err := abi.ReportToProto(raw[:abi.ReportSize])
	if err != nil {
		t.Fatalf("parse fake report: %v", err)
	}
	rep.Policy = f.policy
	if rep.Policy == 0 {
		rep.Policy = defaultPolicy
	}
	rep.Measurement = f.measurement[:]
	rep.HostData = f.hostData[:]
	rep.ReportedTcb, rep.CurrentTcb, rep.CommittedTcb, rep.LaunchTcb = f.tcb, f.tcb, f.tcb, f.tcb
	out, err := abi.ReportToAbiBytes(rep)
	if err != nil {
		t.Fatalf("encode fake report: %v", err)
	}
	return out
}

// signedEvidence returns evidence whose report the fake chain signed.
func signedEvidence(t testing.TB, s *sgtest.AmdSigner, f fakeReport) Evidence {
	t.Helper()
	raw := rawReport(t, f)
	r, sig, err := s.Sign(abi.SignedComponent(raw))
	if err != nil {
		t.Fatalf("sign fake report: %v", err)
	}
	if err := abi.SetSignature(r, sig, raw); err != nil {
		t.Fatalf("set signature: %v", err)
	}
	ev := Evidence{TEE: TEE, Report: raw, CertChain: CertChain{ASK: s.Ask.Raw, ARK: s.Ark.Raw, VCEK: s.Vcek.Raw}}
	if f.signer == abi.VlekReportSigner {
		ev.CertChain = CertChain{ASK: s.Asvk.Raw, ARK: s.Ark.Raw, VLEK: s.Vlek.Raw}
	}
	return ev
}
