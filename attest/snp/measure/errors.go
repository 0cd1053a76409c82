package measure

import "errors"

// Sentinel errors. Every error LaunchDigest returns for bad input wraps one
// of these, so callers can tell a configuration mistake from an unusable
// firmware image with errors.Is.
var (
	// ErrInvalidOptions means the Options are inconsistent or incomplete
	// (no firmware, zero vCPUs, SNP guest features without SNPActive, an
	// option given in a mode that cannot use it...).
	ErrInvalidOptions = errors.New("invalid measurement options")

	// ErrUnknownMode means a mode name that ParseMode does not know.
	ErrUnknownMode = errors.New("unknown SEV mode")

	// ErrUnknownVMMType means a VMM type name that ParseVMMType does not
	// know.
	ErrUnknownVMMType = errors.New("unknown VMM type")

	// ErrUnknownVCPUType means a vCPU model name with no known CPUID
	// signature.
	ErrUnknownVCPUType = errors.New("unknown vCPU type")

	// ErrMalformedOVMF means the firmware's GUIDed footer table or SEV
	// metadata is structurally invalid.
	ErrMalformedOVMF = errors.New("malformed firmware image")

	// ErrMissingMetadata means the firmware lacks an entry the requested
	// mode needs, such as the SEV-ES reset block or the SVSM info entry.
	ErrMissingMetadata = errors.New("firmware lacks required SEV metadata")

	// ErrKernelHashesUnsupported means a kernel was given for measured
	// direct boot but the firmware has no place for the SEV hashes table
	// (no hashes-table GPA, or for SNP no SNP_KERNEL_HASHES section). Such
	// firmware would boot the kernel without measuring it.
	ErrKernelHashesUnsupported = errors.New("firmware does not support measured direct boot")
)
