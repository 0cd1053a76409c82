package sim_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
)

// Simulated evidence verifies only against a policy that names the
// simulated root; the default refuses it.
func ExampleVerify() {
	dir, _ := os.MkdirTemp("", "sim-example")
	defer os.RemoveAll(dir)
	authority, err := sim.NewAuthority(dir) // host side
	if err != nil {
		log.Fatal(err)
	}

	// Guest side, with the credentials the host handed over.
	measurement := [48]byte{0x01}
	guest, err := sim.NewAttester(authority.GuestCredentials(), sim.Config{Measurement: measurement})
	if err != nil {
		log.Fatal(err)
	}
	var reportData [attest.ReportDataSize]byte
	copy(reportData[:], "binding of nonce and key")
	ev, err := guest.GetEvidence(context.Background(), reportData)
	if err != nil {
		log.Fatal(err)
	}

	policy := snp.Policy{Measurements: [][]byte{measurement[:]}, ReportData: reportData[:]}
	_, err = sim.Verify(context.Background(), ev, sim.Options{Policy: policy})
	fmt.Println("default policy:", errors.Is(err, sim.ErrSimNotAllowed))

	claims, err := sim.Verify(context.Background(), ev, sim.Options{AllowSim: []sim.RootFingerprint{authority.Root()}, Policy: policy})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("explicitly allowed:", claims.TEE)
	// Output:
	// default policy: true
	// explicitly allowed: sim
}
