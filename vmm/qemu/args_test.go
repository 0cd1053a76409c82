package qemu

import (
	"slices"
	"strings"
	"testing"

	"github.com/sccontainers/scc/vmm"
)

func baseConfig() vmm.Config {
	return vmm.Config{
		ID:        "c1",
		StateDir:  "/run/scc/c1",
		Kernel:    "/var/lib/scc/guest/vmlinux",
		Initrd:    "/var/lib/scc/guest/initrd.img",
		Cmdline:   "console=ttyS0 panic=-1 quiet",
		Firmware:  "/usr/share/qemu/qboot.rom",
		VCPUs:     1,
		MemoryMiB: 512,
		Accel:     vmm.AccelTCG,
		AgentPort: "io.scc.agent",
	}
}

func TestArgs(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *vmm.Config)
		want   string // space-joined argv; no test value contains a space except the cmdline, written with _ here
	}{
		{
			name:   "tcg defaults",
			mutate: func(c *vmm.Config) {},
			want: "-name scc-c1 -M q35,accel=tcg -cpu max -smp 1 -m 512 " +
				"-bios /usr/share/qemu/qboot.rom -kernel /var/lib/scc/guest/vmlinux -initrd /var/lib/scc/guest/initrd.img " +
				"-append console=ttyS0_panic=-1_quiet " +
				"-nodefaults -no-user-config -nographic -display none -no-reboot " +
				"-serial file:/run/scc/c1/console.log " +
				"-qmp unix:/run/scc/c1/qmp.sock,server=on,wait=off " +
				"-pidfile /run/scc/c1/qemu.pid " +
				"-device virtio-serial-pci,id=vser0 " +
				"-chardev socket,id=agent,path=/run/scc/c1/agent.sock,server=on,wait=off " +
				"-device virtserialport,bus=vser0.0,chardev=agent,id=agentport,name=io.scc.agent " +
				"-device virtio-rng-pci",
		},
		{
			name: "room to grow",
			mutate: func(c *vmm.Config) {
				c.VCPUs = 2
				c.MaxVCPUs = 4
				c.MaxMemoryMiB = 4096
			},
			want: "-name scc-c1 -M q35,accel=tcg -cpu max -smp 2,maxcpus=4 -m 512,slots=8,maxmem=4096M " +
				"-bios /usr/share/qemu/qboot.rom -kernel /var/lib/scc/guest/vmlinux -initrd /var/lib/scc/guest/initrd.img " +
				"-append console=ttyS0_panic=-1_quiet " +
				"-nodefaults -no-user-config -nographic -display none -no-reboot " +
				"-serial file:/run/scc/c1/console.log " +
				"-qmp unix:/run/scc/c1/qmp.sock,server=on,wait=off " +
				"-pidfile /run/scc/c1/qemu.pid " +
				"-device virtio-serial-pci,id=vser0 " +
				"-chardev socket,id=agent,path=/run/scc/c1/agent.sock,server=on,wait=off " +
				"-device virtserialport,bus=vser0.0,chardev=agent,id=agentport,name=io.scc.agent " +
				"-device virtio-rng-pci",
		},
		{
			name: "kvm, 4 vcpus, two shares, no initrd, no cmdline",
			mutate: func(c *vmm.Config) {
				c.ID = "pod.a_b-2"
				c.StateDir = "/s"
				c.Accel = vmm.AccelKVM
				c.VCPUs = 4
				c.MemoryMiB = 2048
				c.Initrd = ""
				c.Cmdline = ""
				c.AgentPort = "agent0"
				c.Shares = []vmm.Share{{Tag: "rootfs", Path: "/run/scc/rootfs"}, {Tag: "vol1", Path: "/data/v"}}
			},
			want: "-name scc-pod.a_b-2 -M q35,accel=kvm -cpu host -smp 4 -m 2048 " +
				"-bios /usr/share/qemu/qboot.rom -kernel /var/lib/scc/guest/vmlinux " +
				"-nodefaults -no-user-config -nographic -display none -no-reboot " +
				"-serial file:/s/console.log " +
				"-qmp unix:/s/qmp.sock,server=on,wait=off " +
				"-pidfile /s/qemu.pid " +
				"-device virtio-serial-pci,id=vser0 " +
				"-chardev socket,id=agent,path=/s/agent.sock,server=on,wait=off " +
				"-device virtserialport,bus=vser0.0,chardev=agent,id=agentport,name=agent0 " +
				"-fsdev local,id=fs0,path=/run/scc/rootfs,security_model=none " +
				"-device virtio-9p-pci,fsdev=fs0,mount_tag=rootfs " +
				"-fsdev local,id=fs1,path=/data/v,security_model=none " +
				"-device virtio-9p-pci,fsdev=fs1,mount_tag=vol1 " +
				"-device virtio-rng-pci",
		},
		{
			name:   "forwarded channel",
			mutate: func(c *vmm.Config) { c.ForwardPort = "io.scc.forward" },
			want: "-name scc-c1 -M q35,accel=tcg -cpu max -smp 1 -m 512 " +
				"-bios /usr/share/qemu/qboot.rom -kernel /var/lib/scc/guest/vmlinux -initrd /var/lib/scc/guest/initrd.img " +
				"-append console=ttyS0_panic=-1_quiet " +
				"-nodefaults -no-user-config -nographic -display none -no-reboot " +
				"-serial file:/run/scc/c1/console.log " +
				"-qmp unix:/run/scc/c1/qmp.sock,server=on,wait=off " +
				"-pidfile /run/scc/c1/qemu.pid " +
				"-device virtio-serial-pci,id=vser0 " +
				"-chardev socket,id=agent,path=/run/scc/c1/agent.sock,server=on,wait=off " +
				"-device virtserialport,bus=vser0.0,chardev=agent,id=agentport,name=io.scc.agent " +
				"-chardev socket,id=forward,path=/run/scc/c1/forward.sock,server=on,wait=off " +
				"-device virtserialport,bus=vser0.0,chardev=forward,id=forwardport,name=io.scc.forward " +
				"-device virtio-rng-pci",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			tt.mutate(&c)
			got, err := Args(c)
			if err != nil {
				t.Fatalf("Args: %v", err)
			}
			want := strings.Fields(tt.want)
			for i, w := range want {
				want[i] = strings.ReplaceAll(w, "_panic=-1_quiet", " panic=-1 quiet")
			}
			if !slices.Equal(got, want) {
				t.Errorf("Args() =\n  %q\nwant\n  %q", got, want)
			}
		})
	}
}

// The kernel command line is one argument however many words it has.
func TestArgsCmdlineIsOneArgument(t *testing.T) {
	got, err := Args(baseConfig())
	if err != nil {
		t.Fatal(err)
	}
	i := slices.Index(got, "-append")
	if i < 0 || got[i+1] != "console=ttyS0 panic=-1 quiet" {
		t.Errorf("-append argument = %q, want the whole cmdline", got[i+1:i+2])
	}
}

func TestRestoreArgs(t *testing.T) {
	plain, err := Args(baseConfig())
	if err != nil {
		t.Fatal(err)
	}
	got, err := restoreArgs(baseConfig())
	if err != nil {
		t.Fatal(err)
	}
	// Same machine, so the saved device state fits; plus: start paused and
	// wait for migrate-incoming.
	want := append(slices.Clone(plain), "-S", "-incoming", "defer")
	if !slices.Equal(got, want) {
		t.Errorf("restoreArgs() =\n  %q\nwant\n  %q", got, want)
	}
}

func TestArgsUnresolvedAccel(t *testing.T) {
	for _, a := range []vmm.Accel{vmm.AccelAuto, "", "hvf"} {
		c := baseConfig()
		c.Accel = a
		if got, err := Args(c); err == nil {
			t.Errorf("Args with accel %q = %q, want error", a, got)
		}
	}
}

func BenchmarkCommandLine(b *testing.B) {
	c := baseConfig()
	c.Shares = []vmm.Share{{Tag: "rootfs", Path: "/run/scc/rootfs"}, {Tag: "vol1", Path: "/data/v"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Args(c); err != nil {
			b.Fatal(err)
		}
	}
}

func TestArgsMemoryFile(t *testing.T) {
	for _, tc := range []struct {
		shared bool
		want   string
	}{
		{true, "memory-backend-file,id=ram0,mem-path=/var/lib/scc/t/memory,size=512M,share=on"},
		{false, "memory-backend-file,id=ram0,mem-path=/var/lib/scc/t/memory,size=512M,share=off"},
	} {
		cfg := baseConfig()
		cfg.Memory = vmm.MemoryFile{File: "/var/lib/scc/t/memory", Shared: tc.shared}
		for _, f := range []func(vmm.Config) ([]string, error){Args, restoreArgs} {
			argv, err := f(cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(argv, " ")
			if !strings.Contains(got, "-object "+tc.want) || !strings.Contains(got, ",memory-backend=ram0 ") {
				t.Errorf("shared %v: argv lacks the memory backend %q or the machine's use of it:\n%s", tc.shared, tc.want, got)
			}
		}
	}
}
