package measure_test

import (
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/sccontainers/scc/attest/tdx/measure"
)

// The MRTD and RTMR[2] a TD will report when QEMU boots it from a TDVF
// image, with a kernel, an initrd and a command line.
func Example() {
	img, err := os.ReadFile("testdata/debian-ovmf-2022.11-6+deb12u2.fd")
	if err != nil {
		log.Fatal(err)
	}
	fw, err := measure.ParseTDVF(img)
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range fw.Sections() {
		fmt.Printf("%-7v 0x%08x %#8x %v\n", s.Type, s.MemoryAddress, s.MemoryDataSize, s.Attributes)
	}
	mrtd, err := fw.MRTD(measure.OrderPerPage)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("MRTD  %x\n", mrtd)

	rtmr2, err := measure.DirectBootRTMR2(measure.DirectBoot{
		Cmdline: "console=ttyS0 quiet",
		Initrd:  strings.NewReader("hello initrd"),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("RTMR2 %x\n", rtmr2)
	// Output:
	// BFV     0xffe20000 0x1e0000 MR.EXTEND
	// CFV     0xffe00000  0x20000 0
	// TempMem 0x00810000  0x10000 0
	// TempMem 0x0080b000   0x2000 0
	// TD_HOB  0x00809000   0x2000 0
	// TempMem 0x00800000   0x6000 0
	// MRTD  4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057fb887fed0744d5631a212967fb231c47
	// RTMR2 ff8575528b5dfce8a3411d775284ad682ae335baefce2ad547541e23c3ec92135222e36b2ae5e61501044604bb0f1dea
}
