package measure_test

import (
	"fmt"
	"log"
	"os"

	"github.com/sccontainers/scc/attest/snp/measure"
)

// The reference value for an SNP guest that QEMU boots with
// -cpu EPYC-v4 -smp 1, the AmdSev firmware and a directly booted kernel
// (here empty, as in the upstream test this digest comes from).
func ExampleLaunchDigest() {
	digest, err := measure.LaunchDigest(measure.Options{
		Mode:          measure.ModeSNP,
		VCPUs:         1,
		VCPUType:      "EPYC-v4",
		OVMFPath:      "testdata/fixtures/ovmf_AmdSev_suffix.bin",
		GuestFeatures: 0x21,
		DirectBoot: &measure.DirectBoot{
			KernelPath: os.DevNull,
			InitrdPath: os.DevNull,
			Cmdline:    "console=ttyS0 loglevel=7",
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%x\n", digest)
	// Output: 803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977
}

// Starting the chain from a precomputed firmware hash reaches the same
// digest as measuring the firmware pages.
func ExampleSNPOVMFHash() {
	data, err := os.ReadFile("testdata/fixtures/ovmf_AmdSev_suffix.bin")
	if err != nil {
		log.Fatal(err)
	}
	fw, err := measure.ParseOVMF(data)
	if err != nil {
		log.Fatal(err)
	}
	seed, err := measure.SNPOVMFHash(fw)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("firmware: %x\n", seed)

	digest, err := measure.LaunchDigest(measure.Options{
		Mode:          measure.ModeSNP,
		VCPUs:         1,
		VCPUType:      "EPYC-v4",
		OVMF:          data,
		SNPOVMFHash:   seed,
		GuestFeatures: 0x21,
		DirectBoot:    &measure.DirectBoot{Cmdline: "console=ttyS0 loglevel=7"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("launch:   %x\n", digest)
	// Output:
	// firmware: 086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74
	// launch:   803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977
}
