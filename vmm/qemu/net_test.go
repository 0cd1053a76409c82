package qemu

import (
	"net"
	"os"
	"strings"
	"testing"

	"github.com/sccontainers/scc/vmm"
)

func TestArgsNetDevices(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mac0, _ := net.ParseMAC("0a:58:0a:63:00:05")
	mac1, _ := net.ParseMAC("0a:58:0a:63:01:05")
	cfg := baseConfig()
	cfg.Net = []vmm.NetDevice{{Tap: f, MAC: mac0}, {Tap: f, MAC: mac1}}
	argv, err := Args(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(argv, " ")
	// Tap files are passed as extra files 3, 4, ... in order.
	for _, want := range []string{
		"-netdev tap,id=net0,fd=3 -device virtio-net-pci,netdev=net0,mac=0a:58:0a:63:00:05",
		"-netdev tap,id=net1,fd=4 -device virtio-net-pci,netdev=net1,mac=0a:58:0a:63:01:05",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("argv lacks %q:\n%s", want, got)
		}
	}
	cfg.Net = []vmm.NetDevice{{MAC: mac0}}
	if err := cfg.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "no tap file") {
		t.Errorf("a net device without a tap: error %v, want one about the tap", err)
	}
}

func TestArgsTPM(t *testing.T) {
	cfg := baseConfig()
	cfg.TPM = &vmm.TPM{Socket: "/run/scc/c1/tpm/ctrl.sock"}
	argv, err := Args(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := "-chardev socket,id=chrtpm,path=/run/scc/c1/tpm/ctrl.sock -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-crb,tpmdev=tpm0"
	if got := strings.Join(argv, " "); !strings.Contains(got, want) {
		t.Errorf("argv lacks %q:\n%s", want, got)
	}
}

func TestArgsTPMChannel(t *testing.T) {
	cfg := baseConfig()
	cfg.TPM = &vmm.TPM{Socket: "/run/scc/c1/tpm/swtpm-cmd.sock", Port: "io.scc.tpm"}
	argv, err := Args(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(argv, " ")
	want := "-chardev socket,id=chrtpm,path=/run/scc/c1/tpm/swtpm-cmd.sock -device virtserialport,bus=vser0.0,chardev=chrtpm,id=tpmport,name=io.scc.tpm"
	if !strings.Contains(got, want) {
		t.Errorf("argv lacks %q:\n%s", want, got)
	}
	if strings.Contains(got, "tpm-crb") {
		t.Errorf("a TPM channel also made a TPM device:\n%s", got)
	}
}

func TestArgsVMGenID(t *testing.T) {
	cfg := baseConfig()
	cfg.VMGenID = true
	for _, f := range []func(vmm.Config) ([]string, error){Args, restoreArgs} {
		argv, err := f(cfg)
		if err != nil {
			t.Fatal(err)
		}
		// guid=auto: QEMU draws a new generation ID at every start,
		// restores included.
		if got := strings.Join(argv, " "); !strings.Contains(got, "-device vmgenid,guid=auto") {
			t.Errorf("argv lacks the vmgenid device:\n%s", got)
		}
	}
}
