package measure

import "errors"

// Sentinel errors. Every error this package returns for bad input wraps one
// of these, so callers can tell firmware that is not TDVF from firmware
// that is broken or that QEMU would not launch.
var (
	// ErrNotTDVF means the image has no TDX metadata: no footer GUID
	// table, or no TDX metadata offset entry in it. QEMU refuses to launch
	// a TD from such firmware.
	ErrNotTDVF = errors.New("firmware has no TDX metadata")

	// ErrMalformedTDVF means the footer table or the TDVF metadata
	// descriptor and its sections are structurally invalid.
	ErrMalformedTDVF = errors.New("malformed TDVF metadata")

	// ErrUnsupported means well-formed metadata that QEMU does not launch
	// (a section type it does not know, raw data where it expects none),
	// or whose measurement depends on data that is not in the image (a TD
	// HOB section marked MR.EXTEND).
	ErrUnsupported = errors.New("TDVF metadata not supported by the QEMU launch")
)
