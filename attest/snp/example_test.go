package snp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	sgtest "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/snp"
)

// A key broker verifies a guest's report against a reference measurement
// and the binding to its session. The report here is signed by
// go-sev-guest's test-only AMD chain, so that chain is passed as the
// trusted root; a real verifier leaves TrustedRoots nil to use AMD's roots.
func ExampleVerify() {
	created := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	amd, err := sgtest.DefaultTestOnlyCertChain(sgtest.GetProductName(), created)
	if err != nil {
		log.Fatal(err)
	}

	// Guest side: bind the report to the broker's nonce and a fresh key.
	guestKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	reportData, err := attest.ReportData("nonce-from-the-broker", guestKey.Public())
	if err != nil {
		log.Fatal(err)
	}
	raw := sgtest.CreateRawReport(&sgtest.TestReportOptions{ReportData: reportData[:]})
	report := raw[:abi.ReportSize]
	binary.LittleEndian.PutUint64(report[0x08:], 0x30000) // guest policy: SMT, no debug
	measurement := report[0x90:0xc0]
	copy(measurement, []byte("launch digest of the guest firmware and kernel!!"))
	r, s, _ := amd.Sign(abi.SignedComponent(report))
	_ = abi.SetSignature(r, s, report)
	ev := snp.Evidence{TEE: snp.TEE, Report: report, CertChain: snp.CertChain{VCEK: amd.Vcek.Raw}}

	// Broker side.
	roots := trust.AMDRootCertsProduct(kds.ProductLine(abi.DefaultSevProduct()))
	roots.ProductCerts = &trust.ProductCerts{Ark: amd.Ark, Ask: amd.Ask}
	claims, err := snp.Verify(context.Background(), ev, snp.Options{
		TrustedRoots: map[string][]*trust.AMDRootCerts{roots.ProductLine: {roots}},
		Now:          created.Add(time.Hour),
		Policy: snp.Policy{
			Measurements: [][]byte{[]byte("launch digest of the guest firmware and kernel!!")},
			ReportData:   reportData[:],
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(claims.TEE, claims.SigningKey, "debug:", claims.Debug)
	// Output: snp VCEK debug: false
}
