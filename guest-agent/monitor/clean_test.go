package monitor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sccontainers/scc/attest/vtpm"
)

// A clean drops the last tenant's init data from the log, needs a new
// TPM, replays the rest into it and extends the clean event; the next
// tenant binds init data of its own, and its verifier sees generation 1.
func TestMeterCleaned(t *testing.T) {
	ctx := context.Background()
	m := booted(t)
	if err := m.attach(ctx, newTPM(t)); err != nil {
		t.Fatal(err)
	}
	if err := m.bindInitData([32]byte{0xa}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.cleaned(ctx, m.tpm, [32]byte{1}); !errors.Is(err, errTPMNotNew) {
		t.Fatalf("clean onto the last tenant's TPM: %v, want errTPMNotNew", err)
	}
	m = booted(t)
	if err := m.attach(ctx, newTPM(t)); err != nil {
		t.Fatal(err)
	}
	if err := m.bindInitData([32]byte{0xa}); err != nil {
		t.Fatal(err)
	}
	gen, err := m.cleaned(ctx, newTPM(t), [32]byte{1})
	if err != nil || gen != 1 || m.currentGeneration() != 1 {
		t.Fatalf("cleaned = %d, %v (generation %d), want 1", gen, err, m.currentGeneration())
	}
	next := []byte("the next tenant's init data")
	if err := m.bindInitData(vtpmDigest(next)); err != nil {
		t.Fatalf("the next tenant binds its init data: %v", err)
	}
	rd := [64]byte{7}
	ev, _, err := m.evidence(ctx, rd)
	if err != nil {
		t.Fatal(err)
	}
	c := verify(t, ev, rd)
	if want := vtpm.InitDataPCR(next); !bytes.Equal(c.PCRs[vtpm.PCRInitData], want[:]) {
		t.Errorf("init data PCR %x, want the next tenant's alone %x", c.PCRs[vtpm.PCRInitData], want)
	}
	o, err := vtpm.OriginOf(c)
	if err != nil || !o.Fresh() || o.Generation() != 1 || o.Cleans[0].Nonce != ([32]byte{1}) {
		t.Errorf("origin %+v, %v; want fresh, generation 1", o, err)
	}
	if _, err := m.cleaned(ctx, newTPM(t), [32]byte{2}); err != nil || m.currentGeneration() != 2 {
		t.Fatalf("second clean: %v, generation %d", err, m.currentGeneration())
	}

	// Without a TPM the log alone records it.
	bare := booted(t)
	if gen, err := bare.cleaned(ctx, nil, [32]byte{3}); err != nil || gen != 1 {
		t.Fatalf("clean without a TPM: %d, %v", gen, err)
	}
	if _, err := bare.cleaned(ctx, newTPM(t), [32]byte{4}); err == nil {
		t.Error("a clean gave a TPM to a guest that had none")
	}
}

func vtpmDigest(b []byte) [32]byte { return sha256.Sum256(b) }

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		stat  string
		state string
		flags uint64
		bad   bool
	}{
		{stat: "42 (sleep) S 1 42 42 0 -1 4194560 100 0", state: "S", flags: 4194560},
		{stat: "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0", state: "S", flags: 2129984},
		{stat: "7 (a) b) c) Z 1 7 7 0 -1 4194564 0 0", state: "Z", flags: 4194564},
		{stat: "7 (x", bad: true},
		{stat: "7 (x) S 1", bad: true},
	} {
		state, flags, err := parseStat(tc.stat)
		if (err != nil) != tc.bad || (!tc.bad && (state != tc.state || flags != tc.flags)) {
			t.Errorf("parseStat(%q) = %q, %d, %v", tc.stat, state, flags, err)
		}
	}
	if _, flags, _ := parseStat("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0"); flags&pfKthread == 0 {
		t.Error("kthreadd is not a kernel thread")
	}
}

func TestSysctlKinds(t *testing.T) {
	for v, want := range map[string]bool{"1\n": true, "4\t4\t1\t7\n": true, "-1\n": true, "core\n": false, "\n": false, "": false, "|/bin/x\n": false} {
		if got := numeric([]byte(v)); got != want {
			t.Errorf("numeric(%q) = %v", v, got)
		}
	}
	for rel, want := range map[string]bool{
		"kernel/core_pattern": false, "kernel/random": true, "kernel/random/uuid": true,
		"kernel/shmmax": true, "kernel/sem": true, "net": true, "net/ipv4/ip_forward": true,
		"vm/swappiness": false, "kernel/ns_last_pid": true, "kernel/nmi_watchdog": false,
	} {
		if got := volatileSysctl(rel); got != want {
			t.Errorf("volatileSysctl(%q) = %v", rel, got)
		}
	}
}

func TestUnder(t *testing.T) {
	dirs := map[string]bool{"/run/a": true, "/tmp/x/y": true}
	for p, want := range map[string]bool{"/run/a/b": true, "/run/a/b/c": true, "/run/a": false, "/run/ab": false, "/tmp/x/y/z": true, "/tmp/x": false} {
		if got := under(p, dirs); got != want {
			t.Errorf("under(%q) = %v", p, got)
		}
	}
}

// fakePort adds a virtio-serial port's directory to a sysfs-like one.
func fakePort(t *testing.T, sys, dev, name string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(sys, dev), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sys, dev, "name"), []byte(name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A port counts as replaced once it is there again as another directory
// (another inode), even under its old device name.
func TestWaitReplaced(t *testing.T) {
	sys := t.TempDir()
	fakePort(t, sys, "vport0p1", "io.scc.agent")
	fakePort(t, sys, "vport0p2", "io.scc.tpm")
	before, err := portInodes(sys, []string{"io.scc.agent", "io.scc.tpm", "io.scc.absent"})
	if err != nil || len(before) != 2 {
		t.Fatalf("portInodes = %v, %v", before, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := waitReplaced(ctx, sys, before); err == nil {
		t.Fatal("waitReplaced returned with no port replaced")
	}
	done := make(chan error, 1)
	go func() { done <- waitReplaced(context.Background(), sys, before) }()
	for _, p := range []struct{ dev, name string }{{"vport0p1", "io.scc.agent"}, {"vport0p2", "io.scc.tpm"}} {
		// A new directory first, then the old one goes: its inode
		// differs.
		fakePort(t, sys, p.dev+".new", p.name)
		os.RemoveAll(filepath.Join(sys, p.dev))
		if err := os.Rename(filepath.Join(sys, p.dev+".new"), filepath.Join(sys, p.dev)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitReplaced did not see the replaced ports")
	}
}

func TestInitOnFree(t *testing.T) {
	for cmdline, want := range map[string]bool{
		"console=ttyS0 init_on_free=1":         true,
		"init_on_free=on quiet":                true,
		"console=ttyS0":                        false,
		"init_on_free=0":                       false,
		"init_on_free=1 init_on_free=0":        false,
		"init_on_free=0 init_on_free=1":        true,
		"xinit_on_free=1 init_on_free_pages=1": false,
	} {
		if got := initOnFree(cmdline); got != want {
			t.Errorf("initOnFree(%q) = %v", cmdline, got)
		}
	}
}
