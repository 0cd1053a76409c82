package measure

import (
	"crypto/sha512"
	"fmt"
	"io"
)

// ExtendRTMR returns the value of an RTMR after TDG.MR.RTMR.EXTEND of
// digest: SHA-384 of the old value followed by the digest. rtmr and digest
// must be Size bytes.
func ExtendRTMR(rtmr, digest []byte) ([]byte, error) {
	if len(rtmr) != Size || len(digest) != Size {
		return nil, fmt.Errorf("extend rtmr: register of %d bytes and digest of %d, want %d each", len(rtmr), len(digest), Size)
	}
	h := sha512.New384()
	h.Write(rtmr)
	h.Write(digest)
	return h.Sum(nil), nil
}

// ReplayRTMR returns the value an RTMR holds after the given event
// digests were extended into it, from its initial value of zeros: what a
// verifier compares with the quote after reading an RTMR's events from the
// CC event log.
func ReplayRTMR(digests [][]byte) ([]byte, error) {
	r := make([]byte, Size)
	for i, d := range digests {
		var err error
		if r, err = ExtendRTMR(r, d); err != nil {
			return nil, fmt.Errorf("replay rtmr: event %d: %w", i, err)
		}
	}
	return r, nil
}

// InitrdArg says where the firmware puts the "initrd=initrd" argument it
// adds to the kernel's load options when QEMU passes an initrd; the load
// options are measured, so it changes RTMR[2].
type InitrdArg int

const (
	// InitrdArgSuffix appends " initrd=initrd" after QEMU's command line:
	// edk2's X86QemuLoadImageLib up to at least edk2-stable202505, which
	// includes the TDVF builds distributions ship.
	InitrdArgSuffix InitrdArg = iota
	// InitrdArgPrefix puts "initrd=initrd " before it: later edk2, whose
	// loader also boots through shim.
	InitrdArgPrefix
)

// LoadOptions returns the UEFI load options TDVF gives a kernel booted
// directly by QEMU with the command line cmdline (and an initrd when
// initrd is true): the command line with the initrd argument, each byte
// widened to a CHAR16, NUL-terminated. It is empty when there is nothing
// to pass.
func LoadOptions(cmdline string, initrd bool, arg InitrdArg) ([]byte, error) {
	s := cmdline
	if initrd {
		switch arg {
		case InitrdArgSuffix:
			s += " initrd=initrd"
		case InitrdArgPrefix:
			s = "initrd=initrd " + s
		default:
			return nil, fmt.Errorf("load options: unknown initrd argument placement %d", int(arg))
		}
	}
	if s == "" {
		return nil, nil
	}
	// edk2 widens the ASCII command line byte by byte
	// (UnicodeSPrintAsciiFormat), which is UTF-16LE for ASCII.
	out := make([]byte, 0, 2*len(s)+2)
	for i := 0; i < len(s); i++ {
		out = append(out, s[i], 0)
	}
	return append(out, 0, 0), nil
}

// DirectBoot is what QEMU boots with -kernel, -initrd and -append.
type DirectBoot struct {
	Cmdline string
	// Initrd is the initrd's content; nil means no -initrd.
	Initrd io.Reader
	// InitrdArg is where the firmware puts its initrd argument.
	InitrdArg InitrdArg
}

// RTMR2Events returns the digests a Linux EFI stub with CC measurement
// support (Linux 6.9 and later) extends into RTMR[2] (PCR 9) when TDVF
// boots it directly: its load options ("LOADED_IMAGE::LoadOptions"), then
// the initrd it loads ("Linux initrd"). Nothing is measured for what is
// absent. Older kernels measure neither in a TD, and RTMR[2] stays zero
// until the booted system extends it.
func RTMR2Events(b DirectBoot) ([][]byte, error) {
	opts, err := LoadOptions(b.Cmdline, b.Initrd != nil, b.InitrdArg)
	if err != nil {
		return nil, fmt.Errorf("rtmr2 events: %w", err)
	}
	var events [][]byte
	if len(opts) > 0 {
		d := sha512.Sum384(opts)
		events = append(events, d[:])
	}
	if b.Initrd != nil {
		h := sha512.New384()
		if _, err := io.Copy(h, b.Initrd); err != nil {
			return nil, fmt.Errorf("rtmr2 events: read initrd: %w", err)
		}
		events = append(events, h.Sum(nil))
	}
	return events, nil
}

// DirectBootRTMR2 returns RTMR[2] after the EFI stub's measurements of b,
// before the booted system extends it further.
func DirectBootRTMR2(b DirectBoot) ([]byte, error) {
	events, err := RTMR2Events(b)
	if err != nil {
		return nil, err
	}
	return ReplayRTMR(events)
}
