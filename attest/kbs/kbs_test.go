package kbs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/sccontainers/scc/attest/client"
	"github.com/sccontainers/scc/attest/kbs"
	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
)

func TestEndToEndSim(t *testing.T) {
	h := newHarness(t)
	h.setAttestationPolicy(t, h.simPolicy())
	secret := []byte("layer key 0123456789abcdef")
	h.setResource(t, "default/image-key/layer1", secret)

	for _, kt := range []struct {
		name string
		kt   client.KeyType
	}{{"RSA-3072", client.RSA3072}, {"EC P-256", client.ECP256}} {
		t.Run(kt.name, func(t *testing.T) {
			c := h.client()
			c.KeyType = kt.kt
			got, err := c.GetResource(context.Background(), "default/image-key/layer1", h.guest(sim.Config{}))
			if err != nil {
				t.Fatalf("GetResource() = %v", err)
			}
			if !bytes.Equal(got, secret) {
				t.Fatalf("GetResource() = %q, want %q", got, secret)
			}
		})
	}
	t.Run("kbs URI", func(t *testing.T) {
		got, err := h.client().GetResource(context.Background(), "kbs:///default/image-key/layer1", h.guest(sim.Config{}))
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("GetResource(kbs URI) = %q, %v", got, err)
		}
	})
}

func TestAttestationRefused(t *testing.T) {
	h := newHarness(t)
	h.setResource(t, "default/image-key/layer1", []byte("secret"))
	other, err := sim.NewAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wrong [48]byte
	copy(wrong[:], "another guest")

	otherRoot := h.simPolicy()
	p := otherRoot[sim.TEE]
	p.Roots = []sim.RootFingerprint{other.Root()}
	otherRoot[sim.TEE] = p

	disallowed := h.simPolicy()
	p = disallowed[sim.TEE]
	p.Allow = false
	disallowed[sim.TEE] = p

	snpOnly := map[string]kbs.TEEPolicy{snp.TEE: {Allow: true, Measurements: []string{hex.EncodeToString(h.measurement[:])}}}

	tests := []struct {
		name    string
		policy  map[string]kbs.TEEPolicy // nil: default policy
		guest   sim.Config
		status  int
		problem string
		detail  string
	}{
		{name: "default policy refuses sim", status: http.StatusForbidden, problem: "PolicyDeny", detail: "simulated TEE evidence not allowed"},
		{name: "policy for SNP only", policy: snpOnly, status: http.StatusForbidden, problem: "PolicyDeny", detail: "simulated"},
		{name: "sim listed but not allowed", policy: disallowed, status: http.StatusForbidden, problem: "PolicyDeny", detail: "simulated"},
		{name: "another sim root", policy: otherRoot, status: http.StatusForbidden, problem: "PolicyDeny", detail: "is not listed"},
		{name: "wrong measurement", policy: h.simPolicy(), guest: sim.Config{Measurement: wrong}, status: http.StatusForbidden, problem: "PolicyDeny", detail: "measurement mismatch"},
		{name: "debug guest", policy: h.simPolicy(), guest: sim.Config{Policy: 0x30000 | 1<<19}, status: http.StatusForbidden, problem: "PolicyDeny", detail: "debug"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := h.srv.SetPolicy(context.Background(), kbs.Policy{Attestation: tc.policy}); err != nil {
				t.Fatal(err)
			}
			_, err := h.client().GetResource(context.Background(), "default/image-key/layer1", h.guest(tc.guest))
			se := wantServerError(t, err, tc.status, tc.problem)
			if se.TEE != sim.TEE || !strings.Contains(se.Detail, tc.detail) {
				t.Fatalf("refusal = %+v, want tee sim and detail containing %q", se, tc.detail)
			}
		})
	}
}

func TestNonceSingleUse(t *testing.T) {
	h := newHarness(t)
	h.setAttestationPolicy(t, h.simPolicy())
	guest := h.guest(sim.Config{})

	s := h.rawAuth(t, sim.TEE)
	body := s.attestBody(t, guest, s.nonce)
	if resp, data := s.attest(t, body); resp.StatusCode != http.StatusOK {
		t.Fatalf("first attest: %d %s", resp.StatusCode, data)
	}
	t.Run("same session again", func(t *testing.T) {
		// The session is attested now: it has no nonce left to use.
		resp, data := s.attest(t, body)
		wantProblem(t, resp, data, http.StatusUnauthorized, "InvalidSession", sim.TEE)
	})
	t.Run("evidence replayed into a new session", func(t *testing.T) {
		s2 := h.rawAuth(t, sim.TEE)
		s2.key = s.key // even with the same key, the nonce differs
		resp, data := s2.attest(t, body)
		wantProblem(t, resp, data, http.StatusUnauthorized, "AttestationFailed", sim.TEE)
	})
	t.Run("key swapped", func(t *testing.T) {
		s3 := h.rawAuth(t, sim.TEE)
		// Evidence bound to s3's nonce and key, sent with another key.
		good := s3.attestBody(t, guest, s3.nonce)
		var m map[string]json.RawMessage
		_ = json.Unmarshal(good, &m)
		other := h.rawAuth(t, sim.TEE)
		m["tee-pubkey"], _ = json.Marshal(jose.JSONWebKey{Key: other.key.Public()})
		swapped, _ := json.Marshal(m)
		resp, data := s3.attest(t, swapped)
		wantProblem(t, resp, data, http.StatusUnauthorized, "AttestationFailed", sim.TEE)
	})
	t.Run("failed attempt also consumes the nonce", func(t *testing.T) {
		s4 := h.rawAuth(t, sim.TEE)
		resp, data := s4.attest(t, []byte(`{"tee-pubkey": {}, "tee-evidence": {}}`))
		wantProblem(t, resp, data, http.StatusBadRequest, "InvalidRequest", sim.TEE)
		resp, data = s4.attest(t, s4.attestBody(t, guest, s4.nonce))
		wantProblem(t, resp, data, http.StatusUnauthorized, "InvalidSession", "")
	})
}

func TestExpiry(t *testing.T) {
	h := newHarness(t)
	h.setAttestationPolicy(t, h.simPolicy())
	secret := []byte("s3cret")
	h.setResource(t, "default/key/1", secret)
	guest := h.guest(sim.Config{})

	t.Run("challenge expires", func(t *testing.T) {
		s := h.rawAuth(t, sim.TEE)
		h.clock.Advance(6 * time.Minute)
		resp, data := s.attest(t, s.attestBody(t, guest, s.nonce))
		wantProblem(t, resp, data, http.StatusUnauthorized, "InvalidSession", sim.TEE)
	})
	t.Run("attested session and token expire", func(t *testing.T) {
		s := h.rawAuth(t, sim.TEE)
		resp, data := s.attest(t, s.attestBody(t, guest, s.nonce))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("attest: %d %s", resp.StatusCode, data)
		}
		var tok struct{ Token string }
		_ = json.Unmarshal(data, &tok)

		resp, data = h.do(t, http.MethodGet, "/resource/default/key/1", s.cookie, "", nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Kbs-Tee") != sim.TEE {
			t.Fatalf("resource before expiry: %d %s (tee %q)", resp.StatusCode, data, resp.Header.Get("Kbs-Tee"))
		}
		if got := decryptJWE(t, data, s.key); !bytes.Equal(got, secret) {
			t.Fatalf("resource = %q", got)
		}

		h.clock.Advance(6 * time.Minute)
		resp, data = h.do(t, http.MethodGet, "/resource/default/key/1", s.cookie, "", nil)
		wantProblem(t, resp, data, http.StatusUnauthorized, "InvalidSession", sim.TEE)
		// The expired token's signature still holds, so the refusal can
		// say its TEE.
		resp, data = h.do(t, http.MethodGet, "/resource/default/key/1", nil, tok.Token, nil)
		wantProblem(t, resp, data, http.StatusUnauthorized, "InvalidSession", sim.TEE)
	})
}

func TestBearerToken(t *testing.T) {
	h := newHarness(t)
	h.setAttestationPolicy(t, h.simPolicy())
	secret := []byte("bearer secret")
	h.setResource(t, "default/key/1", secret)

	s := h.rawAuth(t, sim.TEE)
	resp, data := s.attest(t, s.attestBody(t, h.guest(sim.Config{}), s.nonce))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("attest: %d %s", resp.StatusCode, data)
	}
	var tok struct{ Token string }
	if err := json.Unmarshal(data, &tok); err != nil {
		t.Fatal(err)
	}
	claims := tokenPayload(t, tok.Token)
	for _, k := range []string{"ext", "iat", "iss", "jwk", "tee-pubkey", "tcb-status", "evaluation-report", "tee", "measurement"} {
		if _, ok := claims[k]; !ok {
			t.Errorf("token lacks claim %q", k)
		}
	}
	if claims["tee"] != sim.TEE || claims["measurement"] != hex.EncodeToString(h.measurement[:]) {
		t.Fatalf("token claims tee=%v measurement=%v", claims["tee"], claims["measurement"])
	}

	resp, data = h.do(t, http.MethodGet, "/resource/default/key/1", nil, tok.Token, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("resource with bearer token: %d %s", resp.StatusCode, data)
	}
	var jwe map[string]any
	_ = json.Unmarshal(data, &jwe)
	for _, k := range []string{"protected", "encrypted_key", "iv", "ciphertext", "tag"} {
		if _, ok := jwe[k]; !ok {
			t.Errorf("JWE response lacks %q (spec Response schema)", k)
		}
	}
	if got := decryptJWE(t, data, s.key); !bytes.Equal(got, secret) {
		t.Fatalf("resource = %q", got)
	}

	parts := strings.Split(tok.Token, ".")
	parts[1] = parts[1][:len(parts[1])-2] + "AA"
	resp, data = h.do(t, http.MethodGet, "/resource/default/key/1", nil, strings.Join(parts, "."), nil)
	wantProblem(t, resp, data, http.StatusUnauthorized, "InvalidSession", "")
}

func tokenPayload(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWS compact serialization", token)
	}
	raw, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if typ := raw.Signatures[0].Header.ExtraHeaders["typ"]; typ != "JWT" {
		t.Fatalf("token typ = %v, want JWT", typ)
	}
	var m map[string]any
	if err := json.Unmarshal(raw.UnsafePayloadWithoutVerification(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestResourceErrors(t *testing.T) {
	h := newHarness(t)
	h.setAttestationPolicy(t, h.simPolicy())
	h.setResource(t, "default/key/1", []byte("k1"))
	h.setResource(t, "hw/key/1", []byte("k2"))
	if status, body := h.adminPost(t, h.adminToken(t), "/resource-policy", policyBody(t, map[string]kbs.ResourceRule{
		"hw/*/*": {TEEs: []string{snp.TEE}},
	}, false)); status != http.StatusOK {
		t.Fatalf("set resource policy: %d %s", status, body)
	}
	guest := h.guest(sim.Config{})
	tests := []struct {
		path    string
		status  int
		problem string
	}{
		{path: "default/key/1", status: http.StatusOK},
		{path: "default/key/unknown", status: http.StatusNotFound, problem: "ResourceNotFound"},
		{path: "hw/key/1", status: http.StatusForbidden, problem: "PolicyDeny"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			_, err := h.client().GetResource(context.Background(), tc.path, guest)
			if tc.status == http.StatusOK {
				if err != nil {
					t.Fatalf("GetResource() = %v", err)
				}
				return
			}
			if se := wantServerError(t, err, tc.status, tc.problem); se.TEE != sim.TEE {
				t.Fatalf("refusal does not say the TEE: %+v", se)
			}
		})
	}
	t.Run("no session", func(t *testing.T) {
		resp, data := h.do(t, http.MethodGet, "/resource/default/key/1", nil, "", nil)
		wantProblem(t, resp, data, http.StatusUnauthorized, "InvalidSession", "")
	})
	t.Run("challenged but not attested", func(t *testing.T) {
		s := h.rawAuth(t, sim.TEE)
		resp, data := h.do(t, http.MethodGet, "/resource/default/key/1", s.cookie, "", nil)
		wantProblem(t, resp, data, http.StatusUnauthorized, "InvalidSession", sim.TEE)
	})
	t.Run("bad path segment", func(t *testing.T) {
		resp, data := h.do(t, http.MethodGet, "/resource/default/key/..", nil, "", nil)
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("dot-dot resource path served: %s", data)
		}
	})
}

func TestBadRequests(t *testing.T) {
	h := newHarness(t)
	h.setAttestationPolicy(t, h.simPolicy())
	guest := h.guest(sim.Config{})

	t.Run("auth: unsupported tee", func(t *testing.T) {
		resp, data := h.do(t, http.MethodPost, "/auth", nil, "", []byte(`{"version":"0.1.0","tee":"intel-sgx"}`))
		wantProblem(t, resp, data, http.StatusBadRequest, "InvalidRequest", "")
	})
	t.Run("auth: not JSON", func(t *testing.T) {
		resp, data := h.do(t, http.MethodPost, "/auth", nil, "", []byte(`tee=sim`))
		wantProblem(t, resp, data, http.StatusBadRequest, "InvalidRequest", "")
	})
	t.Run("attest: no cookie", func(t *testing.T) {
		resp, data := h.do(t, http.MethodPost, "/attest", nil, "", []byte(`{}`))
		wantProblem(t, resp, data, http.StatusUnauthorized, "InvalidSession", "")
	})

	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	big, _ := rsa.GenerateKey(rand.Reader, 2048)
	keyCases := []struct {
		name string
		jwk  any
	}{
		{name: "private key", jwk: jose.JSONWebKey{Key: big}},
		{name: "1024-bit RSA", jwk: jose.JSONWebKey{Key: &small.PublicKey}},
		{name: "RSA1_5", jwk: jose.JSONWebKey{Key: &big.PublicKey, Algorithm: "RSA1_5"}},
		{name: "not a key", jwk: map[string]string{"kty": "RSA"}},
	}
	for _, tc := range keyCases {
		t.Run("attest: "+tc.name, func(t *testing.T) {
			s := h.rawAuth(t, sim.TEE)
			var m map[string]json.RawMessage
			_ = json.Unmarshal(s.attestBody(t, guest, s.nonce), &m)
			m["tee-pubkey"], _ = json.Marshal(tc.jwk)
			body, _ := json.Marshal(m)
			resp, data := s.attest(t, body)
			wantProblem(t, resp, data, http.StatusBadRequest, "InvalidRequest", sim.TEE)
		})
	}
	for _, tc := range []struct{ tee, evidence string }{
		{"snp", `{"tee":"snp","report":"AAAA","cert_chain":{}}`},
		{"tdx", `{"tee":"tdx","quote":"BAACAIEAAAA="}`},
		{"vtpm", `{"tee":"vtpm","quote":"AA==","signature":"AA==","ak_public":"AA==","pcrs":{"99":"00"}}`},
	} {
		t.Run("attest: malformed "+tc.tee+" evidence", func(t *testing.T) {
			m, d := strings.Repeat("ab", 48), strings.Repeat("cd", 32)
			if err := h.srv.SetPolicy(context.Background(), kbs.Policy{Attestation: map[string]kbs.TEEPolicy{
				"snp":  {Allow: true, Measurements: []string{m}},
				"tdx":  {Allow: true, MRTD: []string{m}},
				"vtpm": {Allow: true, TrustedAKs: []string{d}, PCRs: map[string][]string{"10": {d}}},
			}}); err != nil {
				t.Fatal(err)
			}
			s := h.rawAuth(t, tc.tee)
			resp, data := s.attest(t, s.attestBodyWith([]byte(tc.evidence)))
			wantProblem(t, resp, data, http.StatusBadRequest, "InvalidRequest", tc.tee)
		})
	}
	t.Run("attest: evidence for another TEE than the session", func(t *testing.T) {
		s := h.rawAuth(t, snp.TEE)
		resp, data := s.attest(t, s.attestBody(t, guest, s.nonce))
		wantProblem(t, resp, data, http.StatusUnauthorized, "AttestationFailed", snp.TEE)
	})
	t.Run("attest: sim evidence relabelled snp", func(t *testing.T) {
		if err := h.srv.SetPolicy(context.Background(), kbs.Policy{Attestation: map[string]kbs.TEEPolicy{
			snp.TEE: {Allow: true, Measurements: []string{hex.EncodeToString(h.measurement[:])}},
		}}); err != nil {
			t.Fatal(err)
		}
		s := h.rawAuth(t, snp.TEE)
		var m map[string]json.RawMessage
		_ = json.Unmarshal(s.attestBody(t, guest, s.nonce), &m)
		m["tee-evidence"] = bytes.Replace(m["tee-evidence"], []byte(`"tee":"sim"`), []byte(`"tee":"snp"`), 1)
		body, _ := json.Marshal(m)
		resp, data := s.attest(t, body)
		wantProblem(t, resp, data, http.StatusUnauthorized, "AttestationFailed", snp.TEE)
		if !strings.Contains(string(data), "signature or certificate chain") {
			t.Fatalf("refusal %s does not name the signature check", data)
		}
	})
}

func TestAdminAuth(t *testing.T) {
	h := newHarness(t)
	_, wrongKey, _ := ed25519Key()
	expired, _ := kbs.NewAdminToken(h.adminKey, h.clock.Now().Add(-time.Hour), 10*time.Minute)
	wrong, _ := kbs.NewAdminToken(wrongKey, h.clock.Now(), 5*time.Minute)
	future, _ := kbs.NewAdminToken(h.adminKey, h.clock.Now().Add(time.Hour), 10*time.Minute)
	good := h.adminToken(t)

	endpoints := []struct {
		path string
		body []byte
	}{
		{"/resource/default/key/1", []byte("secret")},
		{"/attestation-policy", policyBody(t, h.simPolicy(), true)},
		{"/resource-policy", policyBody(t, map[string]kbs.ResourceRule{}, false)},
	}
	tokens := []struct {
		name  string
		token string
	}{
		{"none", ""},
		{"garbage", "not.a.jwt"},
		{"other key", wrong},
		{"expired", expired},
		{"issued in the future", future},
	}
	for _, ep := range endpoints {
		for _, tk := range tokens {
			t.Run(ep.path+" "+tk.name, func(t *testing.T) {
				status, data := h.adminPost(t, tk.token, ep.path, ep.body)
				if status != http.StatusUnauthorized || !strings.Contains(string(data), "AdminAuthFailed") {
					t.Fatalf("status %d %s, want 401 AdminAuthFailed", status, data)
				}
			})
		}
		t.Run(ep.path+" good", func(t *testing.T) {
			if status, data := h.adminPost(t, good, ep.path, ep.body); status != http.StatusOK {
				t.Fatalf("status %d %s", status, data)
			}
		})
	}

	t.Run("admin disabled without a key", func(t *testing.T) {
		h.start(t, nil)
		status, data := h.adminPost(t, good, "/resource/default/key/1", []byte("x"))
		if status != http.StatusUnauthorized || !strings.Contains(string(data), "disabled") {
			t.Fatalf("status %d %s, want 401 admin disabled", status, data)
		}
	})
}

func TestAdminPolicyValidation(t *testing.T) {
	h := newHarness(t)
	tok := h.adminToken(t)
	simNoRoots := h.simPolicy()
	p := simNoRoots[sim.TEE]
	p.Roots = nil
	simNoRoots[sim.TEE] = p
	tests := []struct {
		name string
		path string
		body []byte
	}{
		{"not base64", "/attestation-policy", []byte(`{"type":"scc","policy_id":"default","policy":"%%%"}`)},
		{"unknown engine", "/attestation-policy", []byte(`{"type":"rego","policy_id":"default","policy":"e30"}`)},
		{"other policy id", "/attestation-policy", []byte(`{"type":"scc","policy_id":"x","policy":"e30"}`)},
		{"sim allowed without roots", "/attestation-policy", policyBody(t, simNoRoots, true)},
		{"unknown TEE", "/attestation-policy", policyBody(t, map[string]any{"sgx": map[string]any{"allow": true}}, true)},
		{"unknown field", "/attestation-policy", policyBody(t, map[string]any{"sim": map[string]any{"allow_everything": true}}, true)},
		{"snp allowed without measurements", "/attestation-policy", policyBody(t, map[string]any{"snp": map[string]any{"allow": true}}, true)},
		{"short measurement", "/attestation-policy", policyBody(t, map[string]any{"snp": map[string]any{"allow": true, "measurements": []string{"abcd"}}}, true)},
		{"bad resource pattern", "/resource-policy", policyBody(t, map[string]any{"a/b": map[string]any{}}, false)},
		{"resource rule for unknown TEE", "/resource-policy", policyBody(t, map[string]any{"a/b/c": map[string]any{"tees": []string{"sgx"}}}, false)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, data := h.adminPost(t, tok, tc.path, tc.body)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d %s, want 400", status, data)
			}
		})
	}
	// Nothing was stored: simulated evidence is still refused.
	_, err := h.client().GetResource(context.Background(), "default/key/1", h.guest(sim.Config{}))
	wantServerError(t, err, http.StatusForbidden, "PolicyDeny")
}

func TestPersistence(t *testing.T) {
	h := newHarness(t)
	h.setAttestationPolicy(t, h.simPolicy())
	secret := []byte("PLAINTEXT-LAYER-KEY-must-not-appear-on-disk")
	h.setResource(t, "default/image-key/layer1", secret)
	fp := h.fp

	err := filepath.WalkDir(h.dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, secret) {
			t.Errorf("%s contains the plaintext resource", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"store.key", "token-key.pem", "tls.key", "resources.enc"} {
		fi, err := os.Stat(filepath.Join(h.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, fi.Mode().Perm())
		}
	}

	// Restart on the same data dir: same certificate, policy and resources.
	h.ts.Close()
	h.start(t, h.adminKey.Public().(ed25519PublicKey))
	if h.fp != fp {
		t.Fatalf("certificate fingerprint changed across restart: %s -> %s", fp, h.fp)
	}
	got, err := h.client().GetResource(context.Background(), "default/image-key/layer1", h.guest(sim.Config{}))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("after restart GetResource() = %q, %v", got, err)
	}

	t.Run("key file readable by others refused", func(t *testing.T) {
		if err := os.Chmod(filepath.Join(h.dir, "store.key"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := kbs.New(context.Background(), kbs.Config{DataDir: h.dir}); err == nil {
			t.Fatal("kbs.New() accepted a world-readable store key")
		}
	})
	t.Run("wrong store key refused", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(h.dir, "store.key"), make([]byte, 32), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := kbs.New(context.Background(), kbs.Config{DataDir: h.dir}); err == nil {
			t.Fatal("kbs.New() opened the store with the wrong key")
		}
	})
}

func TestTLSPinning(t *testing.T) {
	h := newHarness(t)
	h.setAttestationPolicy(t, h.simPolicy())
	h.setResource(t, "default/key/1", []byte("k"))
	guest := h.guest(sim.Config{})
	wrongPin := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		c    *client.Client
	}{
		{"wrong pin", &client.Client{URL: h.ts.URL, CertFingerprint: wrongPin}},
		{"no pin, self-signed certificate", &client.Client{URL: h.ts.URL}},
		{"malformed pin", &client.Client{URL: h.ts.URL, CertFingerprint: "abc"}},
		{"plain http without AllowHTTP", &client.Client{URL: strings.Replace(h.ts.URL, "https", "http", 1)}},
		{"pin and HTTPClient", &client.Client{URL: h.ts.URL, CertFingerprint: h.fp, HTTPClient: h.ts.Client()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.KeyType = client.ECP256
			if _, err := tc.c.GetResource(context.Background(), "default/key/1", guest); err == nil {
				t.Fatal("GetResource() succeeded")
			}
		})
	}
	t.Run("pin with colons", func(t *testing.T) {
		var parts []string
		for i := 0; i < len(h.fp); i += 2 {
			parts = append(parts, h.fp[i:i+2])
		}
		c := &client.Client{URL: h.ts.URL, CertFingerprint: strings.Join(parts, ":"), KeyType: client.ECP256}
		if _, err := c.GetResource(context.Background(), "default/key/1", guest); err != nil {
			t.Fatalf("GetResource() = %v", err)
		}
	})
}

// FuzzDecodeAttestation feeds untrusted /attest bodies to the decoder.
func FuzzDecodeAttestation(f *testing.F) {
	auth, err := sim.NewAuthority(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	ev, err := auth.Attester(sim.Config{}).Evidence(context.Background(), [64]byte{})
	if err != nil {
		f.Fatal(err)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	good, _ := json.Marshal(map[string]any{"tee-pubkey": jose.JSONWebKey{Key: &key.PublicKey}, "tee-evidence": json.RawMessage(ev)})
	asString, _ := json.Marshal(map[string]any{"tee-pubkey": jose.JSONWebKey{Key: &key.PublicKey}, "tee-evidence": string(ev)})
	withClaims, _ := json.Marshal(map[string]any{"tee-pubkey": jose.JSONWebKey{Key: &key.PublicKey}, "tee-evidence": json.RawMessage(ev),
		"runtime-claims": map[string]any{"images": []any{map[string]any{"manifest": "sha256:" + strings.Repeat("a", 64), "config": "sha256:" + strings.Repeat("c", 64), "pinned": true}}}})
	f.Add(good)
	f.Add(asString)
	f.Add(withClaims)
	vtpmEv, err := os.ReadFile(filepath.Join("..", "vtpm", "testdata", "evidence.json"))
	if err != nil {
		f.Fatal(err)
	}
	quote, err := os.ReadFile(filepath.Join("..", "tdx", "testdata", "tdx_prod_quote_SPR_E4.dat"))
	if err != nil {
		f.Fatal(err)
	}
	tdxEv, _ := json.Marshal(map[string]any{"tee": "tdx", "quote": quote})
	for _, ev := range [][]byte{vtpmEv, tdxEv} {
		body, _ := json.Marshal(map[string]any{"tee-pubkey": jose.JSONWebKey{Key: &key.PublicKey}, "tee-evidence": json.RawMessage(ev)})
		f.Add(body)
	}
	f.Add([]byte(`{"tee-pubkey":{"kty":"EC"},"tee-evidence":""}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		k, ev, claims, err := kbs.DecodeAttestation(body)
		if err != nil {
			return
		}
		if claims != nil {
			if _, err := claims.Marshal(); err != nil {
				t.Fatalf("decoded claims do not encode: %v", err)
			}
		}
		if k == nil || !k.IsPublic() {
			t.Fatal("decoded a non-public key without error")
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(ev, &obj); err != nil {
			t.Fatalf("decoded evidence %q is not a JSON object: %v", ev, err)
		}
	})
}
