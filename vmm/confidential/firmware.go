package confidential

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SEVDevice is the host's AMD Secure Processor device.
const SEVDevice = "/dev/sev"

// sevPlatformStatus is SEV_PLATFORM_STATUS of <linux/psp-sev.h>.
const sevPlatformStatus = 1

// sevIssueCmd is SEV_ISSUE_CMD: _IOWR('S', 0, struct sev_issue_cmd), whose
// packed struct is 16 bytes.
const sevIssueCmd = 0xC0105300

// SEVFirmware is the version the AMD Secure Processor firmware reports.
type SEVFirmware struct {
	APIMajor, APIMinor, Build uint8
	// State is the platform state: 0 uninitialised, 1 initialised,
	// 2 working.
	State uint8
}

func (f SEVFirmware) String() string {
	return fmt.Sprintf("%d.%d build %d", f.APIMajor, f.APIMinor, f.Build)
}

// HostSEVFirmware asks the SEV firmware for its platform status through
// /dev/sev (root only).
func HostSEVFirmware() (SEVFirmware, error) {
	f, err := os.OpenFile(SEVDevice, os.O_RDWR, 0)
	if err != nil {
		return SEVFirmware{}, fmt.Errorf("sev firmware: %w", err)
	}
	defer f.Close()
	// struct sev_user_data_status, packed: api_major, api_minor, state
	// (u8 each), flags (u32), build (u8), guest_count (u32).
	var status [12]byte
	var cmd [16]byte
	binary.LittleEndian.PutUint32(cmd[0:], sevPlatformStatus)
	binary.LittleEndian.PutUint64(cmd[4:], uint64(uintptr(unsafe.Pointer(&status[0]))))
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), sevIssueCmd, uintptr(unsafe.Pointer(&cmd[0]))); errno != 0 {
		return SEVFirmware{}, fmt.Errorf("sev firmware: SEV_PLATFORM_STATUS: %w (firmware error %#x)", errno, binary.LittleEndian.Uint32(cmd[12:]))
	}
	return parseSEVStatus(status), nil
}

func parseSEVStatus(b [12]byte) SEVFirmware {
	return SEVFirmware{APIMajor: b[0], APIMinor: b[1], State: b[2], Build: b[7]}
}
