package vtpm_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/sccontainers/scc/attest/vtpm"
)

var record = flag.Bool("record", false, "re-record testdata/evidence.json from a fresh swtpm")

// recordedNonce is the qualifying data of testdata/evidence.json.
var recordedNonce = vtpm.QualifyingData([64]byte([]byte("scc recorded vtpm evidence: a fixed 64-byte report data value....")))

// recordedPCR10 is PCR 10 after the recorded log's one event for it,
// SHA-256(zeros || SHA-256(u32be(3) || "container image")), computed
// outside this package.
const recordedPCR10 = "5ac3665d394ccf0f3fb10abead3c572362fb1afd91bb3d9a347f1501594c81c8"

// TestRecordedEvidence checks the evidence kept in testdata, which other
// packages' tests and fuzz seeds use: it decodes and verifies, its log
// replays to its PCRs. With -record it is made again from swtpm first.
func TestRecordedEvidence(t *testing.T) {
	path := filepath.Join("testdata", "evidence.json")
	if *record {
		tpm := newTPM(t)
		var log vtpm.Log
		measure(t, tpm, &log, 9, 1, "kernel")
		measure(t, tpm, &log, 9, 2, "initrd")
		measure(t, tpm, &log, 10, 3, "container image")
		a := &vtpm.Attester{TPM: tpm, PCRs: []int{0, 9, 10}, EventLog: log.MarshalBinary}
		var rd [64]byte
		copy(rd[:], recordedNonce)
		data, err := a.Evidence(context.Background(), rd)
		if err != nil {
			t.Fatal(err)
		}
		var pretty bytes.Buffer
		if err := jsonIndent(&pretty, data); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := vtpm.DecodeEvidence(data)
	if err != nil {
		t.Fatal(err)
	}
	nonce, err := ev.QuoteNonce()
	if err != nil || !bytes.Equal(nonce, recordedNonce) {
		t.Fatalf("QuoteNonce = %x, %v; want %x", nonce, err, recordedNonce)
	}
	want10, _ := hex.DecodeString(recordedPCR10)
	claims, err := vtpm.Verify(ev, vtpm.VerifyOptions{
		Nonce:        recordedNonce,
		TrustedAKs:   [][32]byte{vtpm.AKDigest(ev.AKPublic)},
		ExpectedPCRs: map[int][]byte{10: want10},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(claims.Events) != 3 || string(claims.Events[2].Data) != "container image" {
		t.Fatalf("events = %+v", claims.Events)
	}
	if _, err := vtpm.Verify(ev, vtpm.VerifyOptions{Nonce: []byte("another nonce"), TrustedAKs: [][32]byte{vtpm.AKDigest(ev.AKPublic)}}); !errors.Is(err, vtpm.ErrNonceMismatch) {
		t.Fatalf("Verify(other nonce) = %v, want %v", err, vtpm.ErrNonceMismatch)
	}
}

func jsonIndent(dst *bytes.Buffer, src []byte) error {
	if err := json.Indent(dst, src, "", "  "); err != nil {
		return err
	}
	dst.WriteByte('\n')
	return nil
}
