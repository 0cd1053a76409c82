package kbs_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/client"
	"github.com/sccontainers/scc/attest/kbs"
	"github.com/sccontainers/scc/attest/sim"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// harness is a broker served over TLS on 127.0.0.1 with its own data dir,
// admin key and simulated TEE authority.
type harness struct {
	dir      string
	clock    *fakeClock
	adminKey ed25519.PrivateKey
	auth     *sim.Authority
	// measurement is what the harness's sim guest reports.
	measurement [48]byte
	// tdxCollateralDir is Config.TDXCollateralDir at the next start.
	tdxCollateralDir string

	srv *kbs.Server
	ts  *httptest.Server
	fp  string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := sim.NewAuthority(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		dir:      t.TempDir(),
		clock:    &fakeClock{now: time.Now()},
		adminKey: priv,
		auth:     auth,
	}
	copy(h.measurement[:], "measurement of the simulated guest")
	h.start(t, pub)
	return h
}

// start (re)starts the broker on the harness's data dir.
func (h *harness) start(t *testing.T, adminPub ed25519.PublicKey) {
	t.Helper()
	srv, err := kbs.New(context.Background(), kbs.Config{DataDir: h.dir, AdminKey: adminPub, Now: h.clock.Now, TDXCollateralDir: h.tdxCollateralDir})
	if err != nil {
		t.Fatalf("kbs.New() = %v", err)
	}
	cert, fp, err := kbs.LoadOrCreateCert(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	h.srv, h.ts, h.fp = srv, ts, fp
}

func (h *harness) client() *client.Client {
	return &client.Client{URL: h.ts.URL, CertFingerprint: h.fp, KeyType: client.ECP256}
}

func (h *harness) guest(cfg sim.Config) *sim.Attester {
	if cfg.Measurement == ([48]byte{}) {
		cfg.Measurement = h.measurement
	}
	return h.auth.Attester(cfg)
}

// simPolicy allows the harness's simulated root with its measurement.
func (h *harness) simPolicy() map[string]kbs.TEEPolicy {
	return map[string]kbs.TEEPolicy{sim.TEE: {
		Allow:        true,
		Roots:        []sim.RootFingerprint{h.auth.Root()},
		Measurements: []string{hex.EncodeToString(h.measurement[:])},
	}}
}

func (h *harness) adminToken(t *testing.T) string {
	t.Helper()
	tok, err := kbs.NewAdminToken(h.adminKey, h.clock.Now(), 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// adminPost sends an admin request and returns the status.
func (h *harness) adminPost(t *testing.T, token, path string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.ts.URL+"/kbs/v0"+path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func policyBody(t *testing.T, v any, attestation bool) []byte {
	t.Helper()
	doc, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	req := map[string]string{"policy": base64.URLEncoding.EncodeToString(doc)}
	if attestation {
		req["type"], req["policy_id"] = "scc", "default"
	}
	body, _ := json.Marshal(req)
	return body
}

func (h *harness) setAttestationPolicy(t *testing.T, p map[string]kbs.TEEPolicy) {
	t.Helper()
	if status, body := h.adminPost(t, h.adminToken(t), "/attestation-policy", policyBody(t, p, true)); status != http.StatusOK {
		t.Fatalf("set attestation policy: %d %s", status, body)
	}
}

func (h *harness) setResource(t *testing.T, path string, secret []byte) {
	t.Helper()
	if status, body := h.adminPost(t, h.adminToken(t), "/resource/"+path, secret); status != http.StatusOK {
		t.Fatalf("register resource: %d %s", status, body)
	}
}

// rawSession drives the protocol step by step, for the tests the client
// API cannot express (replays, expiry, tampering).
type rawSession struct {
	h      *harness
	cookie *http.Cookie
	nonce  string
	key    *ecdsa.PrivateKey
}

func (h *harness) rawAuth(t *testing.T, tee string) *rawSession {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"version": "0.1.0", "tee": tee, "extra-params": map[string]any{}})
	resp, data := h.do(t, http.MethodPost, "/auth", nil, "", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("auth: %d %s", resp.StatusCode, data)
	}
	var ch struct {
		Nonce       string            `json:"nonce"`
		ExtraParams map[string]string `json:"extra-params"`
	}
	if err := json.Unmarshal(data, &ch); err != nil || ch.Nonce == "" {
		t.Fatalf("challenge %s: %v", data, err)
	}
	if ch.ExtraParams["tee"] != tee {
		t.Fatalf("challenge extra-params = %v, want tee %q", ch.ExtraParams, tee)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "kbs-session-id" {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatal("auth set no kbs-session-id cookie")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return &rawSession{h: h, cookie: cookie, nonce: ch.Nonce, key: key}
}

// attestBody makes an /attest body with evidence bound to nonce and the session key.
func (s *rawSession) attestBody(t *testing.T, a client.Attester, nonce string) []byte {
	t.Helper()
	rd, err := attest.ReportData(nonce, s.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := a.Evidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	return s.attestBodyWith(ev)
}

// attestBodyWith makes an /attest body carrying evidence as it is, with
// the session key.
func (s *rawSession) attestBodyWith(ev []byte) []byte {
	body, _ := json.Marshal(map[string]any{
		"tee-pubkey":   jose.JSONWebKey{Key: s.key.Public(), Algorithm: string(jose.ECDH_ES_A256KW)},
		"tee-evidence": json.RawMessage(ev),
	})
	return body
}

func (s *rawSession) attest(t *testing.T, body []byte) (*http.Response, []byte) {
	t.Helper()
	return s.h.do(t, http.MethodPost, "/attest", s.cookie, "", body)
}

func (h *harness) do(t *testing.T, method, path string, cookie *http.Cookie, bearer string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, h.ts.URL+"/kbs/v0"+path, bytes.NewReader(body))
	if cookie != nil {
		req.AddCookie(cookie)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

// wantProblem checks an ErrorInformation response.
func wantProblem(t *testing.T, resp *http.Response, data []byte, status int, problem, tee string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d (%s), want %d", resp.StatusCode, data, status)
	}
	var info struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
		TEE    string `json:"tee"`
	}
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatalf("error body %q is not ErrorInformation: %v", data, err)
	}
	if info.Type != "https://github.com/confidential-containers/kbs/errors/"+problem || info.Detail == "" {
		t.Fatalf("ErrorInformation = %+v, want type %s", info, problem)
	}
	if info.TEE != tee || resp.Header.Get("Kbs-Tee") != tee {
		t.Fatalf("error says tee %q / header %q, want %q", info.TEE, resp.Header.Get("Kbs-Tee"), tee)
	}
}

// wantServerError checks a client error for a broker refusal.
func wantServerError(t *testing.T, err error, status int, problem string) *client.ServerError {
	t.Helper()
	var se *client.ServerError
	if !errors.As(err, &se) {
		t.Fatalf("error = %v, want a *client.ServerError", err)
	}
	if se.Status != status || !strings.HasSuffix(se.Type, "/"+problem) {
		t.Fatalf("server error = %+v, want %d %s", se, status, problem)
	}
	return se
}

func decryptJWE(t *testing.T, body []byte, key any) []byte {
	t.Helper()
	obj, err := jose.ParseEncryptedJSON(string(body), []jose.KeyAlgorithm{jose.ECDH_ES_A256KW, jose.RSA_OAEP_256}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		t.Fatalf("parse JWE %s: %v", body, err)
	}
	plain, err := obj.Decrypt(key)
	if err != nil {
		t.Fatalf("decrypt JWE: %v", err)
	}
	return plain
}

type ed25519PublicKey = ed25519.PublicKey

func ed25519Key() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}
