package confidential

import (
	"errors"
	"io/fs"
	"os"
	"testing"
)

func TestParseSEVStatus(t *testing.T) {
	// api 1.55, state working, flags 0, build 21, 3 guests.
	b := [12]byte{1, 55, 2, 0, 0, 0, 0, 21, 3, 0, 0, 0}
	got := parseSEVStatus(b)
	if got != (SEVFirmware{APIMajor: 1, APIMinor: 55, Build: 21, State: 2}) || got.String() != "1.55 build 21" {
		t.Errorf("parsed %+v (%s)", got, got)
	}
}

func TestHostSEVFirmwareWithoutDevice(t *testing.T) {
	if _, err := os.Stat(SEVDevice); err == nil {
		t.Skip("this host has /dev/sev")
	}
	if _, err := HostSEVFirmware(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v, want not-exist", err)
	}
}
