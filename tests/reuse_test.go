package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sccontainers/scc/attest/policy"
	"github.com/sccontainers/scc/attest/vtpm"
	"github.com/sccontainers/scc/imagesplit"
	"github.com/sccontainers/scc/imagesplit/layercrypt"
	"github.com/sccontainers/scc/internal/forward"
	"github.com/sccontainers/scc/snapshot/pool"
	"github.com/sccontainers/scc/vmm/qemu"
	"github.com/sccontainers/scc/vmm/qemu/qmp"
)

// reuseMemoryMiB sizes the reused VMs of the tests: small, so that the
// whole of guest memory is quick to dump and search.
const reuseMemoryMiB = 256

// reuseConfig writes a shim configuration whose VMs have a vTPM and are
// cleaned and reused (vm.start = "reuse"), one kept per configuration.
func reuseConfig(t *testing.T, name string) string {
	t.Helper()
	cfgPath := writeConfig(t, name, fmt.Sprintf("tpm = true\nstart = \"reuse\"\nmemory_mib = %d\n", reuseMemoryMiB))
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, append(b, "\n[pool]\nsize = 1\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logShimWarnings(t)
		}
	})
	return cfgPath
}

// logShimWarnings logs the warnings and errors the shims wrote to
// containerd's log: why a VM was not reused.
func logShimWarnings(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(env.dir, "c", "containerd.log"))
	if err != nil {
		return
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "level=warning") || strings.Contains(l, "level=error") {
			lines = append(lines, l)
		}
	}
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	t.Logf("containerd log warnings:\n%s", strings.Join(lines, "\n"))
}

// runTenant runs script in a privileged container that shares the
// agent's PID namespace (and so, through nsenter, the agent's mount
// namespace: the guest's own file systems), waits for it and returns its
// output lines by their first word.
func runTenant(t *testing.T, ctx context.Context, cfgPath, id, script string, args ...string) map[string]string {
	t.Helper()
	all := append([]string{"run", "--rm", "--runtime", runtimeName, "--runtime-config-path", cfgPath,
		"--privileged", "--privileged-without-host-devices",
		"--annotation", "io.kubernetes.cri.container-type=container", "--with-ns", "pid:/proc/1/ns/pid",
		imageRef, id, "sh", "-c", script, "tenant"}, args...)
	stdout, stderr, code := ctr(t, ctx, "", all...)
	t.Logf("tenant %s:\n%s", id, stdout)
	if code != 0 {
		t.Fatalf("tenant %s: exit %d: %s", id, code, stderr)
	}
	out := map[string]string{}
	for _, line := range strings.Split(stdout, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			out[f[0]] = strings.Join(f[1:], " ")
		}
	}
	return out
}

// tenantA leaves a marker wherever a tenant can: its rootfs and /dev/shm,
// the guest's own file systems (through the agent's mount namespace),
// the hostname, an address and a sysctl (the agent's namespaces are the
// pod's), the memory of a process that left the container's cgroup and
// so outlives the container, and a large tmpfs file. The marker is made
// in the guest and only ever leaves it: nothing the host sends holds it.
const tenantA = `
set -e
M=scc-marker-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "marker $M"
echo "boot_id $(cat /proc/sys/kernel/random/boot_id)"
echo "$M" > /rootfile
yes "$M" | head -c 16777216 > /dev/shm/big
nsenter -t 1 -m sh -c "echo $M > /run/m; echo $M > /tmp/m; echo $M > /dev/shm/m; echo $M > /dev/m; echo $M > /m; mkdir -p /var/m; echo $M > /var/m/f"
hostname "$M"
ip addr add 10.255.255.254/32 dev lo
echo "|/bin/$M" > /proc/sys/kernel/core_pattern
nsenter -t 1 -m sh -c "mkdir -p /sys/fs/cgroup/escape && echo \$\$ > /sys/fs/cgroup/escape/cgroup.procs && exec setsid sh -c 'X=$M; sleep 31337; echo \$X'" </dev/null >/dev/null 2>&1 &
sleep 1
echo "straggler $(ps -o pid,args | grep 'sleep 31337' | grep -v grep | wc -l)"
echo "escaped $(nsenter -t 1 -m cat /sys/fs/cgroup/escape/cgroup.procs | wc -l)"
`

// tenantB looks for the marker given as its argument wherever tenant A
// put one, and for A's process, and tries to read guest memory.
const tenantB = `
M=$1
echo "boot_id $(cat /proc/sys/kernel/random/boot_id)"
for f in $( (find / -xdev -type f; find /dev/shm /tmp /run -type f) 2>/dev/null); do
	grep -qF "$M" "$f" 2>/dev/null && echo "found container:$f"
done
nsenter -t 1 -m sh -c 'for d in / /run /tmp /dev/shm /dev /sys/fs/cgroup; do find $d -xdev -type f 2>/dev/null; done' > /tmp/guestfiles
for f in $(cat /tmp/guestfiles); do
	case "$f" in /sys/*) continue ;; esac
	nsenter -t 1 -m grep -qF "$M" "$f" 2>/dev/null && echo "found guest:$f"
done
echo "escape-cgroup $(nsenter -t 1 -m ls -d /sys/fs/cgroup/escape 2>/dev/null | wc -l)"
echo "hostname $(hostname)"
echo "addresses $(ip addr show dev lo | grep -c 10.255.255.254)"
echo "core_pattern $(cat /proc/sys/kernel/core_pattern)"
echo "straggler $(ps -o pid,args | grep 'sleep 31337' | grep -v grep | wc -l)"
if head -c 1 /dev/mem >/dev/null 2>&1; then echo "devmem readable"; else echo "devmem refused"; fi
if head -c 1 /proc/kcore >/dev/null 2>&1; then echo "kcore readable"; else echo "kcore refused"; fi
`

// dumpGuestMemory saves the guest RAM of the paused VM whose state
// directory is dir (a pooled VM: no QMP client holds its socket) and
// returns it.
func dumpGuestMemory(t *testing.T, ctx context.Context, dir string, mib int) []byte {
	t.Helper()
	c, err := qmp.Dial(ctx, filepath.Join(dir, qemu.QMPSocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	file := filepath.Join(t.TempDir(), "guest.mem")
	if err := c.Execute(ctx, "pmemsave", map[string]any{"val": 0, "size": mib << 20, "filename": file}, nil); err != nil {
		t.Fatalf("pmemsave: %v", err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(file)
	if len(b) != mib<<20 {
		t.Fatalf("dumped %d bytes of guest memory, want %d", len(b), mib<<20)
	}
	return b
}

// pooledDevices lists the named devices of the pooled VM in dir.
func pooledDevices(t *testing.T, ctx context.Context, dir string) []string {
	t.Helper()
	c, err := qmp.Dial(ctx, filepath.Join(dir, qemu.QMPSocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var props []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	if err := c.Execute(ctx, "qom-list", map[string]any{"path": "/machine/peripheral"}, &props); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range props {
		if strings.HasPrefix(p.Type, "child<") {
			names = append(names, p.Name)
		}
	}
	return names
}

// TestReuse runs tenant A in a VM that is cleaned and reused, then checks
// the clean VM: its whole physical memory (dumped by the host, which a
// confidential VM would not allow, to see what a later kernel exploit
// could) holds no marker of A; its evidence verifies with the key
// broker's verifier, shows the clean of generation 1 and a TPM of its
// own, and a policy that refuses reused VMs refuses it; tenant B, in the
// same VM, finds none of A's markers or processes.
func TestReuse(t *testing.T) {
	requireEnv(t)
	requireSwtpm(t)
	ctx := testContext(t)
	cfgPath := reuseConfig(t, "reuse")
	drainAtEnd(t, cfgPath)

	const a = "reuse-a"
	// A's vTPM attestation key, read from its state while it runs.
	akA := make(chan []byte, 1)
	go func() {
		p := filepath.Join(env.run, a, "tpm", "ak.pub")
		for ctx.Err() == nil {
			if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
				akA <- b
				return
			}
		}
	}()
	outA := runTenant(t, ctx, cfgPath, a, tenantA)
	marker := outA["marker"]
	if !strings.HasPrefix(marker, "scc-marker-") || len(marker) != len("scc-marker-")+24 {
		t.Fatalf("tenant A printed marker %q", marker)
	}
	if outA["straggler"] == "0" || outA["escaped"] == "0" {
		t.Fatalf("tenant A's process did not leave its container's cgroup: %v", outA)
	}

	// The sandbox's end cleaned the VM and pooled it: A's QEMU, under
	// A's name.
	vms := waitReady(t, ctx, cfgPath, 1)
	if id := pool.ReadID(vms[0].dir); id != a {
		t.Fatalf("pooled VM is %q, want tenant A's VM %q", id, a)
	}
	pid := qemuPid(t, vms[0].dir)

	mem := dumpGuestMemory(t, ctx, vms[0].dir, reuseMemoryMiB)
	if !bytes.Contains(mem, []byte("Linux version ")) {
		t.Fatal("the guest memory dump does not hold the kernel's banner: not a dump of guest memory")
	}
	for off := 0; ; {
		i := bytes.Index(mem[off:], []byte(marker))
		if i < 0 {
			break
		}
		i += off
		t.Errorf("the cleaned VM's memory holds tenant A's marker at %#x: %q", i, mem[max(0, i-96):min(len(mem), i+96)])
		off = i + len(marker)
	}
	mem = nil

	// The next tenant's evidence: generation 1, a TPM of its own.
	ev := attestVM(t, ctx, cfgPath)
	boot := fmt.Sprintf("%x", quotedPCRs(t, ev)[vtpm.PCRBoot])
	aks := []string{akDigest(ev)}
	c, err := kbsVerify(t, ev, vtpmPolicy(aks, boot, `{"fresh":true,"max_generation":1}`))
	if err != nil {
		t.Fatalf("reused VM under a policy accepting one reuse: %v", err)
	}
	if c.Origin == nil || !c.Origin.Fresh || c.Origin.Generation != 1 {
		t.Errorf("reused VM: origin %+v, want fresh, generation 1", c.Origin)
	}
	var cleans []vtpm.CleanEvent
	initOnFree := false
	for _, e := range c.VTPM.Events {
		switch {
		case e.Type == vtpm.EventCmdline:
			initOnFree = strings.Contains(" "+string(e.Data)+" ", " init_on_free=1 ")
		case e.Type == vtpm.EventClean:
			var ce vtpm.CleanEvent
			if err := ce.UnmarshalBinary(e.Data); err != nil {
				t.Fatal(err)
			}
			cleans = append(cleans, ce)
		case e.PCR == vtpm.PCRInitData:
			t.Errorf("reused VM's log holds an init data event of an earlier tenant")
		}
	}
	if len(cleans) != 1 || cleans[0].Generation != 1 {
		t.Errorf("clean events %+v, want one of generation 1", cleans)
	}
	if !initOnFree {
		t.Error("the reused VM's measured command line lacks init_on_free=1")
	}
	if _, err := kbsVerify(t, ev, vtpmPolicy(aks, boot, `{"fresh":true}`)); !errors.Is(err, policy.ErrOriginNotAllowed) {
		t.Errorf("reused VM under a policy refusing reuse: %v, want %v", err, policy.ErrOriginNotAllowed)
	}
	select {
	case ak := <-akA:
		if bytes.Equal(ak, ev.ProvisionedAK) {
			t.Error("the reused VM attests with tenant A's vTPM attestation key")
		}
	default:
		t.Error("tenant A's vTPM attestation key was never seen")
	}

	// Tenant B, in the same VM (the one kernel: one boot id), finds
	// nothing of A. attest vm's sandbox ended too: this is generation 2.
	waitReady(t, ctx, cfgPath, 1)
	outB := runTenant(t, ctx, cfgPath, "reuse-b", tenantB, marker)
	if outB["boot_id"] != outA["boot_id"] {
		t.Fatalf("tenant B ran in VM %q, tenant A in %q: not reused", outB["boot_id"], outA["boot_id"])
	}
	for k, v := range outB {
		if k == "found" {
			t.Errorf("tenant B found tenant A's marker: %s", v)
		}
	}
	for k, want := range map[string]string{
		"escape-cgroup": "0", "addresses": "0", "straggler": "0",
		"devmem": "refused", "kcore": "refused",
	} {
		if outB[k] != want {
			t.Errorf("tenant B: %s = %q, want %q", k, outB[k], want)
		}
	}
	for _, k := range []string{"hostname", "core_pattern"} {
		if strings.Contains(outB[k], marker) {
			t.Errorf("tenant B's %s is tenant A's: %q", k, outB[k])
		}
	}
	vms = waitReady(t, ctx, cfgPath, 1)
	if got := qemuPid(t, vms[0].dir); got != pid {
		t.Errorf("pooled VM is QEMU %d after tenant B, was %d", got, pid)
	}
}

// TestReuseCleanRefused: a tenant changes the guest's initramfs, which
// the clean cannot undo; the monitor refuses to clean, the VM is stopped
// instead of kept, nothing of it is left, and the next sandbox boots a
// VM of its own.
func TestReuseCleanRefused(t *testing.T) {
	requireEnv(t)
	requireSwtpm(t)
	ctx := testContext(t)
	cfgPath := reuseConfig(t, "reuse-refused")
	drainAtEnd(t, cfgPath)

	out := runTenant(t, ctx, cfgPath, "reuse-tamper", `
echo "boot_id $(cat /proc/sys/kernel/random/boot_id)"
nsenter -t 1 -m sh -c 'echo tampered >> /etc/scc/modules'
echo "tampered $(nsenter -t 1 -m grep -c tampered /etc/scc/modules)"
`)
	if out["tampered"] != "1" {
		t.Fatalf("tenant could not change the initramfs: %v", out)
	}
	// The shim tries the clean after ctr returns; the VM must go, not
	// come back.
	waitDirGone(t, ctx, filepath.Join(env.run, "reuse-tamper"))
	if vms := readyVMs(t, ctx, cfgPath); len(vms) != 0 {
		t.Fatalf("a VM whose clean failed was pooled: %v", vms)
	}
	if _, err := os.Stat(filepath.Join(env.logs, "reuse-tamper.console.log")); err != nil {
		t.Errorf("no console log kept of the VM whose clean failed: %v", err)
	} else if b, _ := os.ReadFile(filepath.Join(env.logs, "reuse-tamper.console.log")); !regexp.MustCompile(`initramfs tree digest`).Match(b) {
		t.Errorf("the console log does not say why the clean failed:\n%s", vmmTail(b))
	}

	next := runTenant(t, ctx, cfgPath, "reuse-next", `echo "boot_id $(cat /proc/sys/kernel/random/boot_id)"`)
	if next["boot_id"] == "" || next["boot_id"] == out["boot_id"] {
		t.Errorf("the next sandbox ran in VM %q, the refused one was %q", next["boot_id"], out["boot_id"])
	}
	waitReady(t, ctx, cfgPath, 1)
}

// waitDirGone waits until the state directory dir is removed.
func waitDirGone(t *testing.T, ctx context.Context, dir string) {
	t.Helper()
	for {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s still there", dir)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func vmmTail(b []byte) string {
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// TestReuseVMKilled: the VM of a reused configuration dies under its
// sandbox; the sandbox's end stops its vTPM, which is detached from the
// shim as the VM's QEMU is, keeps nothing in the pool and leaves nothing
// behind; the next sandbox boots a VM of its own.
func TestReuseVMKilled(t *testing.T) {
	requireEnv(t)
	requireSwtpm(t)
	ctx := testContext(t)
	cfgPath := reuseConfig(t, "reuse-killed")
	drainAtEnd(t, cfgPath)

	const id = "reuse-killed"
	startDetachedWith(t, ctx, cfgPath, id, "sleep", "1000")
	dir := filepath.Join(env.run, id)
	pid := qemuPid(t, dir)
	tpm := swtpmPid(t, filepath.Join(dir, "tpm"))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, ctx, id, "STOPPED")
	ctr(t, ctx, "", "task", "delete", id)
	ctr(t, ctx, "", "containers", "delete", id)
	waitDirGone(t, ctx, dir)
	for processExists(tpm) {
		select {
		case <-ctx.Done():
			t.Fatalf("the dead VM's vTPM (swtpm %d) still runs", tpm)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if vms := readyVMs(t, ctx, cfgPath); len(vms) != 0 {
		t.Fatalf("a dead VM was pooled: %v", vms)
	}
	next := runTenant(t, ctx, cfgPath, "reuse-after-kill", `echo "ok $(cat /proc/sys/kernel/random/boot_id)"`)
	if next["ok"] == "" {
		t.Fatalf("the next sandbox did not run: %v", next)
	}
	waitReady(t, ctx, cfgPath, 1)
}

// swtpmPid returns the pid of the detached swtpm working in dir.
func swtpmPid(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "swtpm.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !processExists(pid) {
		t.Fatalf("swtpm pid %q: %v", b, err)
	}
	return pid
}

// TestReuseConfidential runs a confidential container whose image the
// guest pulls, decrypts and unpacks in its memory, with the image's plain
// layer attached as a dm-verity disk from the host's layer cache, in a
// reused VM: once the sandbox ended, the cleaned VM's memory holds
// neither the secret nor the confidential layer's marker, the disk is
// gone, and the next sandbox, in the same VM, pulls and runs the image
// again.
func TestReuseConfidential(t *testing.T) {
	requireEnv(t)
	setupConfidential(t)
	ctx := testContext(t)
	kbsKey, err := layercrypt.NewKBSKey("kbs:///default/image-key/reuse")
	if err != nil {
		t.Fatal(err)
	}
	if err := confidentialEnv.broker.Server.SetResource(ctx, kbsKey.ResourcePath(), kbsKey.KEK); err != nil {
		t.Fatal(err)
	}
	si := pushSecretImage(t, "reuse:v1", imagesplit.ByIndex{1}, kbsKey)
	cfg := confidentialConfig(t, confidentialEnv.broker.Measurement)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("[vm]\n"), []byte(fmt.Sprintf("[vm]\nstart = \"reuse\"\nmemory_mib = %d\n", reuseMemoryMiB)), 1)
	b = append(b, fmt.Sprintf("layer_cache = %q\n\n[pool]\nsize = 1\n", filepath.Join(env.dir, "reuse-layer-cache"))...)
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	drainAtEnd(t, cfg)

	out, stats, stderr, code := runConfidential(t, ctx, cfg, "reuse-conf-a", si)
	if code != 0 || out != si.Secret {
		t.Fatalf("tenant A: exit %d, output %q, want %q (stderr: %s)", code, out, si.Secret, stderr)
	}
	// The plain layer came as a disk from the host's cache, not from the
	// registry.
	if reg := stats[forward.TargetRegistry]; reg.FromTarget >= si.Layers[0].Size+si.Layers[1].Size {
		t.Fatalf("tenant A pulled %d bytes: the plain layer did not come as a disk", reg.FromTarget)
	}
	vms := waitReady(t, ctx, cfg, 1)
	if id := pool.ReadID(vms[0].dir); id != "reuse-conf-a" {
		t.Fatalf("pooled VM is %q, want tenant A's", id)
	}
	pid := qemuPid(t, vms[0].dir)
	for _, d := range pooledDevices(t, ctx, vms[0].dir) {
		if strings.HasPrefix(d, "blk-") || strings.HasPrefix(d, "nic") {
			t.Errorf("the cleaned VM still has tenant A's device %s", d)
		}
	}
	mem := dumpGuestMemory(t, ctx, vms[0].dir, reuseMemoryMiB)
	if !bytes.Contains(mem, []byte("Linux version ")) {
		t.Fatal("the guest memory dump does not hold the kernel's banner: not a dump of guest memory")
	}
	for what, s := range map[string]string{"secret": si.Secret, "confidential layer's marker": si.Marker} {
		if i := bytes.Index(mem, []byte(s)); i >= 0 {
			t.Errorf("the cleaned VM's memory holds tenant A's %s at %#x", what, i)
		}
	}
	mem = nil

	out, _, stderr, code = runConfidential(t, ctx, cfg, "reuse-conf-b", si)
	if code != 0 || out != si.Secret {
		t.Fatalf("tenant B in the reused VM: exit %d, output %q, want %q (stderr: %s)", code, out, si.Secret, stderr)
	}
	vms = waitReady(t, ctx, cfg, 1)
	if got := qemuPid(t, vms[0].dir); got != pid {
		t.Errorf("tenant B's VM is QEMU %d, tenant A's was %d", got, pid)
	}
}
