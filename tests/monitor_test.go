package tests

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/policy"
	"github.com/sccontainers/scc/attest/verifier"
	"github.com/sccontainers/scc/attest/vtpm"
	"github.com/sccontainers/scc/shim"
)

func requireSwtpm(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Fatalf("swtpm missing (make deps): %v", err)
	}
}

// vtpmConfig writes a shim configuration with a vTPM per VM and templates
// on (made on request only), in a template directory of the test's own.
func vtpmConfig(t *testing.T, name string) string {
	t.Helper()
	cfgPath, _ := snapshotConfig(t, name, false)
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, bytes.Replace(b, []byte("[vm]\n"), []byte("[vm]\ntpm = true\n"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

// attestVM runs `scc attest vm` and decodes its report.
func attestVM(t *testing.T, ctx context.Context, cfgPath string, args ...string) *shim.VMEvidence {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(env.binDir, "scc"), append([]string{"attest", "vm", "--config", cfgPath}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scc attest vm: %v: %s", err, stderr.Bytes())
	}
	var ev shim.VMEvidence
	if err := json.Unmarshal(out, &ev); err != nil {
		t.Fatalf("scc attest vm printed %q: %v", out, err)
	}
	if ev.TEE != vtpm.TEE {
		t.Fatalf("evidence of TEE %q, want vtpm", ev.TEE)
	}
	return &ev
}

// templateDigest returns the state digest `scc snapshot list` shows for
// the configuration's only template.
func templateDigest(t *testing.T, ctx context.Context, cfgPath string) string {
	t.Helper()
	out := scc(t, ctx, "snapshot", "list", "--config", cfgPath)
	m := regexp.MustCompile(`sha256:([0-9a-f]{64})`).FindAllStringSubmatch(out, -1)
	if len(m) != 1 {
		t.Fatalf("want one template digest in:\n%s", out)
	}
	return m[0][1]
}

// kbsVerify verifies a VM's evidence as the key broker does, for the
// session its nonce and agent key make, under a vtpm policy.
func kbsVerify(t *testing.T, ev *shim.VMEvidence, doc string) (*verifier.Claims, error) {
	t.Helper()
	p, err := policy.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("policy %s: %v", doc, err)
	}
	key, err := x509.ParsePKIXPublicKey(ev.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := attest.ReportData(ev.Nonce, key)
	if err != nil {
		t.Fatal(err)
	}
	return verifier.Verify(context.Background(), vtpm.TEE, ev.Evidence, verifier.Options{Policy: &p, ReportData: &rd})
}

func vtpmPolicy(aks []string, bootPCR, origin string) string {
	return fmt.Sprintf(`{"attestation":{"vtpm":{"allow":true,"trusted_aks":["%s"],"pcrs":{"%d":["%s"]},"origin":%s}}}`,
		strings.Join(aks, `","`), vtpm.PCRBoot, bootPCR, origin)
}

func akDigest(ev *shim.VMEvidence) string {
	d := vtpm.AKDigest(ev.ProvisionedAK)
	return hex.EncodeToString(d[:])
}

func quotedPCRs(t *testing.T, ev *shim.VMEvidence) map[int][]byte {
	t.Helper()
	e, err := vtpm.DecodeEvidence(ev.Evidence)
	if err != nil {
		t.Fatal(err)
	}
	return e.PCRs
}

// TestMonitorEvidence attests a VM that booted and two VMs restored from
// one template with the key broker's verifier: each shows the boot its
// monitor measured, the restored ones the template they came from; the
// policy's origin terms tell them apart; no two share a TPM identity or
// agent key; init data lands in its PCR; a tampered log fails.
func TestMonitorEvidence(t *testing.T) {
	requireEnv(t)
	requireSwtpm(t)
	ctx := testContext(t)
	cfgPath := vtpmConfig(t, "monitor-evidence")

	fresh := attestVM(t, ctx, cfgPath) // no template yet: boots
	scc(t, ctx, "snapshot", "create", "--config", cfgPath)
	snap := templateDigest(t, ctx, cfgPath)
	initData := []byte(`kbs_url = "https://kbs.example"` + "\n")
	initFile := filepath.Join(t.TempDir(), "init.toml")
	if err := os.WriteFile(initFile, initData, 0o644); err != nil {
		t.Fatal(err)
	}
	a := attestVM(t, ctx, cfgPath, "--init-data", initFile)
	b := attestVM(t, ctx, cfgPath)

	boot := hex.EncodeToString(quotedPCRs(t, fresh)[vtpm.PCRBoot])
	aks := []string{akDigest(fresh), akDigest(a), akDigest(b)}
	freshOnly := vtpmPolicy(aks, boot, `{"fresh":true}`)
	fromTemplate := vtpmPolicy(aks, boot, `{"snapshots":["`+snap+`"]}`)

	c, err := kbsVerify(t, fresh, freshOnly)
	if err != nil {
		t.Fatalf("fresh VM under a fresh-only policy: %v", err)
	}
	if c.Origin == nil || !c.Origin.Fresh {
		t.Errorf("fresh VM: origin %+v", c.Origin)
	}
	var kinds []vtpm.EventType
	for _, e := range c.VTPM.Events {
		if e.PCR != vtpm.PCRBoot {
			t.Errorf("fresh VM: event of type %d in pcr %d", e.Type, e.PCR)
		}
		kinds = append(kinds, e.Type)
	}
	if want := []vtpm.EventType{vtpm.EventKernel, vtpm.EventCmdline, vtpm.EventInitramfs, vtpm.EventAgent}; fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("fresh VM: events %v, want %v", kinds, want)
	}
	if _, err := kbsVerify(t, fresh, fromTemplate); !errors.Is(err, policy.ErrOriginNotAllowed) {
		t.Errorf("fresh VM under a restored-only policy: %v, want %v", err, policy.ErrOriginNotAllowed)
	}

	for name, ev := range map[string]*shim.VMEvidence{"clone a": a, "clone b": b} {
		c, err := kbsVerify(t, ev, fromTemplate)
		if err != nil {
			t.Fatalf("%s under a policy approving its template: %v", name, err)
		}
		if c.Origin == nil || c.Origin.Fresh || len(c.Origin.RestoredFrom) != 1 || c.Origin.RestoredFrom[0] != snap {
			t.Errorf("%s: origin %+v, want restored from %s", name, c.Origin, snap)
		}
		if _, err := kbsVerify(t, ev, freshOnly); !errors.Is(err, policy.ErrOriginNotAllowed) {
			t.Errorf("%s under a fresh-only policy: %v, want %v", name, err, policy.ErrOriginNotAllowed)
		}
	}

	// Each VM has its own TPM (EK, AK) and agent key; clones differ in
	// their lifecycle PCR by the restore nonce.
	for _, f := range []struct {
		what string
		get  func(*shim.VMEvidence) []byte
	}{
		{"TPM endorsement key", func(e *shim.VMEvidence) []byte { return e.TPMEKPublic }},
		{"attestation key", func(e *shim.VMEvidence) []byte { return e.ProvisionedAK }},
		{"agent key", func(e *shim.VMEvidence) []byte { return e.PublicKey }},
	} {
		if bytes.Equal(f.get(a), f.get(b)) || bytes.Equal(f.get(a), f.get(fresh)) {
			t.Errorf("two VMs share a %s", f.what)
		}
	}
	pa, pb := quotedPCRs(t, a), quotedPCRs(t, b)
	if bytes.Equal(pa[vtpm.PCRLifecycle], pb[vtpm.PCRLifecycle]) {
		t.Error("two clones share their lifecycle PCR")
	}
	// A clone's AK is its own: a policy that trusts only the other's
	// refuses it.
	if _, err := kbsVerify(t, a, vtpmPolicy([]string{akDigest(b)}, boot, `{"snapshots":["`+snap+`"]}`)); !errors.Is(err, vtpm.ErrUntrustedAK) {
		t.Errorf("clone a under a policy trusting clone b's AK: %v, want %v", err, vtpm.ErrUntrustedAK)
	}

	if want := vtpm.InitDataPCR(initData); !bytes.Equal(pa[vtpm.PCRInitData], want[:]) {
		t.Errorf("init data PCR %x, want %x", pa[vtpm.PCRInitData], want)
	}
	if !bytes.Equal(pb[vtpm.PCRInitData], make([]byte, 32)) {
		t.Errorf("a VM without init data has init data PCR %x", pb[vtpm.PCRInitData])
	}

	// Claim another snapshot in clone a's log: the log no longer replays
	// to the quote.
	e, err := vtpm.DecodeEvidence(a.Evidence)
	if err != nil {
		t.Fatal(err)
	}
	var l vtpm.Log
	if err := l.UnmarshalBinary(e.EventLog); err != nil {
		t.Fatal(err)
	}
	var forged vtpm.Log
	for _, ev := range l.Events() {
		data := ev.Data
		if ev.Type == vtpm.EventRestore {
			data, _ = vtpm.RestoreEvent{Snapshot: [32]byte{1}}.MarshalBinary()
		}
		forged.Append(ev.PCR, ev.Type, data)
	}
	e.EventLog, _ = forged.MarshalBinary()
	tampered := *a
	if tampered.Evidence, err = e.MarshalJSON(); err != nil {
		t.Fatal(err)
	}
	if _, err := kbsVerify(t, &tampered, fromTemplate); !errors.Is(err, vtpm.ErrEventLogMismatch) {
		t.Errorf("tampered log: %v, want %v", err, vtpm.ErrEventLogMismatch)
	}
}

// TestRestoreFromTemplateWithVTPM runs containers in VMs restored from a
// template of a configuration with a vTPM.
func TestRestoreFromTemplateWithVTPM(t *testing.T) {
	requireEnv(t)
	requireSwtpm(t)
	ctx := testContext(t)
	cfgPath := vtpmConfig(t, "restore-vtpm")
	scc(t, ctx, "snapshot", "create", "--config", cfgPath)
	restoreTwo(t, ctx, cfgPath, "restored-vtpm")
}

// TestTPMUnreachable checks, from a privileged container in the agent's
// PID namespace, that neither the container nor the agent can open the
// vTPM: the device filter above both refuses it, the agent's view of the
// TPM's device node is /dev/null, and the agent lacks the capabilities
// that would let it replace the kernel or load code into it.
func TestTPMUnreachable(t *testing.T) {
	requireEnv(t)
	requireSwtpm(t)
	ctx := testContext(t)
	cfgPath := writeConfig(t, "tpm-unreachable", "tpm = true\n")
	script := `
port=$(grep -lx io.scc.tpm /sys/class/virtio-ports/*/name)
dev=$(cat $(dirname $port)/dev)
node=/dev/$(basename $(dirname $port))
echo "node $node $dev"
if mknod /tmp/tpm c ${dev%:*} ${dev#*:} 2>/tmp/err; then echo "mknod: ok"; else echo "mknod: $(cat /tmp/err)"; fi
mkdir /tmp/dev && mount -t devtmpfs devtmpfs /tmp/dev
if head -c 1 /tmp/dev/${node#/dev/} >/dev/null 2>/tmp/err; then echo "open: ok"; else echo "open: $(cat /tmp/err)"; fi
umount /tmp/dev
echo "agent-node $(nsenter -t 1 -m stat -L -c '%t:%T' $node)"
echo "agent-$(grep CapBnd /proc/1/status)"
echo "agent-cgroup $(cat /proc/1/cgroup)"
`
	stdout, stderr, code := ctr(t, ctx, "", "run", "--rm", "--runtime", runtimeName, "--runtime-config-path", cfgPath,
		"--privileged", "--privileged-without-host-devices",
		"--annotation", "io.kubernetes.cri.container-type=container", "--with-ns", "pid:/proc/1/ns/pid",
		imageRef, "tpm-unreachable", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("probe container: exit %d: %s %s", code, stdout, stderr)
	}
	out := map[string]string{}
	for _, line := range strings.Split(stdout, "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			out[strings.TrimSuffix(f[0], ":")] = strings.Join(f[1:], " ")
		}
	}
	t.Logf("probe:\n%s", stdout)
	// Operation not permitted is the device filter's refusal; without it
	// the node would be made, and opening it would fail only because the
	// monitor holds the port (device busy).
	for _, op := range []string{"mknod", "open"} {
		if !strings.Contains(out[op], "Operation not permitted") {
			t.Errorf("a privileged container's %s of the vTPM: %q, want the device filter's refusal", op, out[op])
		}
	}
	if out["agent-node"] != "1:3" {
		t.Errorf("the vTPM's node in the agent's mount namespace is %q, want /dev/null's 1:3", out["agent-node"])
	}
	bnd, err := strconv.ParseUint(out["agent-CapBnd"], 16, 64)
	if err != nil {
		t.Fatalf("agent bounding set %q: %v", out["agent-CapBnd"], err)
	}
	for name, bit := range map[string]uint{"CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_BOOT": 22} {
		if bnd&(1<<bit) != 0 {
			t.Errorf("the agent's bounding set %x has %s", bnd, name)
		}
	}
	if bnd&(1<<21) == 0 {
		t.Errorf("the agent's bounding set %x lacks CAP_SYS_ADMIN: this is not the agent", bnd)
	}
	// The agent's cgroup, seen from the container's cgroup namespace, is
	// a sibling of the containers' below the filtered cgroup.
	if !strings.HasSuffix(out["agent-cgroup"], "/agent") {
		t.Errorf("agent cgroup %q, want the monitor's .../agent", out["agent-cgroup"])
	}
}
