package kbs_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/sccontainers/scc/attest/client"
	"github.com/sccontainers/scc/attest/kbs"
	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/vtpm"
	"github.com/sccontainers/scc/attest/vtpm/swtpm"
)

// broker is scc-kbs as its main runs it (kbs.Run), on 127.0.0.1, with a
// policy file and an admin key.
type broker struct {
	url, fingerprint string
	adminKey         ed25519.PrivateKey
}

func startBroker(t *testing.T, policyDoc []byte) *broker {
	t.Helper()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	adminPath, policyPath := filepath.Join(dir, "admin.pem"), filepath.Join(dir, "policy.json")
	if err := os.WriteFile(adminPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policyPath, policyDoc, 0o644); err != nil {
		t.Fatal(err)
	}
	// The certificate the broker will serve, made now so that its pin is
	// known before the broker runs (as an operator would read it from the
	// first start's log).
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, fp, err := kbs.LoadOrCreateCert(dataDir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- kbs.Run(ctx, kbs.RunOptions{Listen: addr, DataDir: dataDir, AdminKeyPath: adminPath, PolicyPath: policyPath})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("kbs.Run: %v", err)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("kbs.Run ended: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker does not listen on %s: %v", addr, err)
		}
	}
	return &broker{url: "https://" + addr, fingerprint: fp, adminKey: priv}
}

// setResource registers a secret through the admin API, over the pinned
// TLS connection.
func (b *broker) setResource(t *testing.T, path string, secret []byte) {
	t.Helper()
	tok, err := kbs.NewAdminToken(b.adminKey, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, b.url+"/kbs/v0/resource/"+path, bytes.NewReader(secret))
	req.Header.Set("Authorization", "Bearer "+tok)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if sum := sha256.Sum256(cs.PeerCertificates[0].Raw); hex.EncodeToString(sum[:]) != b.fingerprint {
				return errors.New("broker certificate does not match the pin")
			}
			return nil
		},
	}}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("register %s: %d %s", path, resp.StatusCode, body)
	}
}

func (b *broker) client() *client.Client {
	return &client.Client{URL: b.url, CertFingerprint: b.fingerprint, KeyType: client.ECP256}
}

// startTPM starts swtpm for the test and returns a connection to its TPM,
// or nil when swtpm is not installed.
func startTPM(t *testing.T) transport.TPM {
	t.Helper()
	if _, err := exec.LookPath(swtpm.Binary); err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := swtpm.StartSwtpm(ctx, t.TempDir(), swtpm.WithCommandSocket())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop swtpm: %v", err)
		}
	})
	tpm, err := s.OpenTPM()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm.Close() })
	return tpm
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func tcb(t *testing.T, snpSVN uint8) uint64 {
	t.Helper()
	v, err := kds.ComposeTCBParts(kds.TCBParts{BlSpl: 3, SnpSpl: snpSVN, UcodeSpl: 0xd1})
	if err != nil {
		t.Fatal(err)
	}
	return uint64(v)
}

// TestEndToEnd runs scc-kbs on 127.0.0.1 and the guest client against it,
// attesting with the simulated TEE and with swtpm's vTPM: each workload
// gets its own key and decrypts it; the negative cases end in precise
// refusals.
func TestEndToEnd(t *testing.T) {
	auth, err := sim.NewAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var measurement [48]byte
	copy(measurement[:], "launch measurement of the pod VM")
	m := hex.EncodeToString(measurement[:])
	// HOST_DATA is the digest of each pod's init data.
	initData := map[string][32]byte{"web": sha256.Sum256([]byte("web init data")), "db": sha256.Sum256([]byte("db init data"))}
	hostData := func(w string) string { d := initData[w]; return hex.EncodeToString(d[:]) }

	// The vTPM guest measures its container image into PCR 10 through
	// scc's log, as the guest's monitor does.
	tpm := startTPM(t)
	var tpmLog vtpm.Log
	var vtpmPolicy, vtpmWorkload string
	if tpm != nil {
		d, err := tpmLog.Append(10, 3, []byte("image web@sha256:"+digest("web image")))
		if err != nil {
			t.Fatal(err)
		}
		if err := vtpm.ExtendPCR(tpm, 10, d); err != nil {
			t.Fatal(err)
		}
		akPub, err := vtpm.AKPublic(tpm)
		if err != nil {
			t.Fatal(err)
		}
		ak := vtpm.AKDigest(akPub)
		pcr10 := tpmLog.Replay()[10]
		vtpmPolicy = `,"vtpm":{"allow":true,"trusted_aks":["` + hex.EncodeToString(ak[:]) + `"]}`
		vtpmWorkload = `,"vtpm":{"pcrs":{"10":["` + hex.EncodeToString(pcr10[:]) + `"]}}`
	}

	policyDoc := []byte(`{
	  "attestation": {
	    "sim": {"allow": true, "roots": ["` + auth.Root().String() + `"], "min_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 209}}` + vtpmPolicy + `
	  },
	  "workloads": {
	    "web": {"sim": {"measurements": ["` + m + `"], "host_data": "` + hostData("web") + `"}` + vtpmWorkload + `},
	    "db":  {"sim": {"measurements": ["` + m + `"], "host_data": "` + hostData("db") + `"}}
	  },
	  "resources": {
	    "default/web-key/*": {"workloads": ["web"]},
	    "default/db-key/*":  {"workloads": ["db"]}
	  }
	}`)
	b := startBroker(t, policyDoc)
	webSecret, dbSecret := []byte("web layer key 0123456789"), []byte("db layer key 9876543210")
	b.setResource(t, "default/web-key/layer1", webSecret)
	b.setResource(t, "default/db-key/layer1", dbSecret)

	simGuest := func(workload string, snpSVN uint8) client.Attester {
		return auth.Attester(sim.Config{Measurement: measurement, HostData: initData[workload], TCB: tcb(t, snpSVN)})
	}
	ctx := context.Background()

	t.Run("sim: each workload gets its own key", func(t *testing.T) {
		got, err := b.client().GetResource(ctx, "default/web-key/layer1", simGuest("web", 8))
		if err != nil || !bytes.Equal(got, webSecret) {
			t.Fatalf("web: GetResource = %q, %v", got, err)
		}
		got, err = b.client().GetResource(ctx, "default/db-key/layer1", simGuest("db", 9))
		if err != nil || !bytes.Equal(got, dbSecret) {
			t.Fatalf("db: GetResource = %q, %v", got, err)
		}
	})
	t.Run("sim: resource outside the workload's policy", func(t *testing.T) {
		_, err := b.client().GetResource(ctx, "default/db-key/layer1", simGuest("web", 8))
		se := wantServerError(t, err, http.StatusForbidden, "PolicyDeny")
		const want = `resource policy denies access: rule "default/db-key/*" allows workloads [db], the session matched [web]`
		if se.Detail != want || se.TEE != sim.TEE {
			t.Fatalf("refusal %+v, want detail %q", se, want)
		}
	})
	t.Run("sim: stale TCB", func(t *testing.T) {
		_, err := b.client().GetResource(ctx, "default/web-key/layer1", simGuest("web", 7))
		se := wantServerError(t, err, http.StatusForbidden, "PolicyDeny")
		if !strings.Contains(se.Detail, "SNP reported TCB below minimum: reported bootloader 3, tee 0, snp 7, microcode 209; minimum bootloader 3, tee 0, snp 8, microcode 209") {
			t.Fatalf("refusal %+v does not say the TCB is below the minimum", se)
		}
	})
	t.Run("sim: init data of no workload", func(t *testing.T) {
		_, err := b.client().GetResource(ctx, "default/web-key/layer1", simGuest("other", 8))
		se := wantServerError(t, err, http.StatusForbidden, "PolicyDeny")
		if !strings.Contains(se.Detail, "no workload matches (workload db: host_data 0000") {
			t.Fatalf("refusal %+v does not say no workload matches", se)
		}
	})

	t.Run("vtpm: swtpm guest gets its key", func(t *testing.T) {
		if tpm == nil {
			t.Skip("swtpm binary not installed (apt-get install swtpm)")
		}
		guest := &vtpm.Attester{TPM: tpm, PCRs: []int{0, 10}, EventLog: tpmLog.MarshalBinary}
		got, err := b.client().GetResource(ctx, "default/web-key/layer1", guest)
		if err != nil || !bytes.Equal(got, webSecret) {
			t.Fatalf("GetResource = %q, %v", got, err)
		}
		_, err = b.client().GetResource(ctx, "default/db-key/layer1", guest)
		se := wantServerError(t, err, http.StatusForbidden, "PolicyDeny")
		if !strings.Contains(se.Detail, "allows workloads [db], the session matched [web]") || se.TEE != vtpm.TEE {
			t.Fatalf("refusal %+v", se)
		}

		// Once something else is measured into PCR 10, the guest is no
		// longer the workload the policy knows.
		d, err := tpmLog.Append(10, 3, []byte("image evil@sha256:"+digest("evil image")))
		if err != nil {
			t.Fatal(err)
		}
		if err := vtpm.ExtendPCR(tpm, 10, d); err != nil {
			t.Fatal(err)
		}
		_, err = b.client().GetResource(ctx, "default/web-key/layer1", guest)
		se = wantServerError(t, err, http.StatusForbidden, "PolicyDeny")
		if !strings.Contains(se.Detail, "no workload matches (workload web: pcr10 ") {
			t.Fatalf("refusal %+v does not name PCR 10", se)
		}
	})
	t.Run("vtpm: quote for another session", func(t *testing.T) {
		if tpm == nil {
			t.Skip("swtpm binary not installed (apt-get install swtpm)")
		}
		// A guest that quotes a nonce of its choosing instead of the
		// session binding is refused as unauthentic, not by policy.
		_, err := b.client().GetResource(ctx, "default/web-key/layer1", replayAttester{&vtpm.Attester{TPM: tpm, PCRs: []int{10}}})
		se := wantServerError(t, err, http.StatusUnauthorized, "AttestationFailed")
		if !strings.Contains(se.Detail, "quote nonce mismatch") {
			t.Fatalf("refusal %+v", se)
		}
	})
}

// replayAttester quotes a fixed nonce, as replayed evidence would carry.
type replayAttester struct{ *vtpm.Attester }

func (a replayAttester) Evidence(ctx context.Context, _ [64]byte) ([]byte, error) {
	return a.Attester.Evidence(ctx, [64]byte{1, 2, 3})
}

// TDX evidence goes through the broker's TDX path: real quote, Intel's
// collateral from the collateral directory, judged at the collateral's
// time. That platform's TCB is below every level Intel lists, so the
// broker refuses it, saying so; without collateral it refuses to judge.
func TestTDXThroughBroker(t *testing.T) {
	quote, err := os.ReadFile(filepath.Join("..", "tdx", "testdata", "tdx_prod_quote_SPR_E4.dat"))
	if err != nil {
		t.Fatal(err)
	}
	evidence, _ := json.Marshal(map[string]any{"tee": "tdx", "quote": quote})
	const mrtd = "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb"
	tdxPolicy := map[string]kbs.TEEPolicy{"tdx": {Allow: true, MRTD: []string{mrtd}}}

	for _, tc := range []struct {
		name, collateral, detail string
	}{
		{"Intel's collateral", filepath.Join("..", "tdx", "testdata", "collateral"), "no matching TCB level found"},
		{"no collateral", "", "collateral missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.clock.now = time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)
			h.tdxCollateralDir = tc.collateral
			h.start(t, h.adminKey.Public().(ed25519.PublicKey))
			h.setAttestationPolicy(t, tdxPolicy)
			s := h.rawAuth(t, "tdx")
			resp, data := s.attest(t, s.attestBodyWith(evidence))
			wantProblem(t, resp, data, http.StatusUnauthorized, "AttestationFailed", "tdx")
			if !strings.Contains(string(data), tc.detail) {
				t.Fatalf("refusal %s does not say %q", data, tc.detail)
			}
		})
	}
}
