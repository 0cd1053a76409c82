// Package client is the guest side of the key broker protocol: from inside
// the guest, given an evidence provider (an Attester), it runs the
// Request-Challenge-Attestation-Response exchange with an scc or
// Trustee-style KBS and fetches a secret, decrypted with a key that never
// leaves the guest. The guest agent uses it to get image layer keys.
//
// One session is: POST /kbs/v0/auth (the broker returns a nonce), then
// POST /kbs/v0/attest with evidence whose REPORT_DATA is
// attest.ReportData(nonce, session key) (attest.ReportDataWithClaims when
// the guest sends runtime claims), then GET /kbs/v0/resource/..., answered
// with a JWE encrypted to the session key.
package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/sccontainers/scc/attest"
)

// Attester produces evidence of the TEE the guest runs in, carrying
// reportData in the signed report (or, for a vTPM, in the quote's
// qualifying data: vtpm.QualifyingData). attest/snp.Attester,
// attest/tdx.Attester, attest/vtpm.Attester and attest/sim.Attester
// implement it.
type Attester interface {
	TEE() string
	Evidence(ctx context.Context, reportData [64]byte) ([]byte, error)
}

// KeyType selects the ephemeral key generated for each session.
type KeyType int

const (
	// RSA3072 is an RSA-3072 key (JWE RSA-OAEP-256), the key the KBS
	// spec's PublicKey schema describes. The default.
	RSA3072 KeyType = iota
	// ECP256 is an EC P-256 key (JWE ECDH-ES+A256KW); faster to generate.
	ECP256
)

// protocolVersion is sent in the auth Request.
const protocolVersion = "0.1.0"

// maxResponse bounds what the client reads from the broker.
const maxResponse = 8 << 20

// Client talks to one key broker.
type Client struct {
	// URL is the broker's base URL, e.g. https://10.0.2.2:8080; the
	// /kbs/v0 prefix is added.
	URL string
	// CertFingerprint pins the broker's certificate: the SHA-256 of its
	// DER, hex (colons allowed), as scc-kbs logs it. With a pin the
	// certificate chain and name are not checked, only the pin.
	CertFingerprint string
	// HTTPClient, if set, is used as is; it cannot be combined with
	// CertFingerprint (the pin needs the client's own transport). Nil
	// means a client with a 30 s timeout and the pin or system roots.
	HTTPClient *http.Client
	// Dial, if set, opens the connections of the client's own transport
	// (the guest's forwarded channel to the broker, say); nil dials the
	// URL's host. It cannot be combined with HTTPClient.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// AllowHTTP permits an http:// URL. The secret is still encrypted to
	// the session key, but nothing authenticates the broker.
	AllowHTTP bool
	// KeyType is the ephemeral key type; RSA3072 by default.
	KeyType KeyType
	// Claims, if set, are the guest's runtime claims (the images it
	// pulled): sent with the evidence and bound into its REPORT_DATA
	// (attest.ReportDataWithClaims), so the broker's policy can judge
	// them.
	Claims *attest.RuntimeClaims
}

// ServerError is a refusal from the broker: its HTTP status and the
// spec's ErrorInformation.
type ServerError struct {
	Status int
	Type   string
	Detail string
	TEE    string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("kbs: %d %s: %s (tee %q)", e.Status, e.Type, e.Detail, e.TEE)
}

// GetResource attests and fetches one resource: auth, attest, then the
// resource, in one session with a key generated for it. path is
// "repository/type/tag", optionally as a "kbs:///repository/type/tag" URI.
func (c *Client) GetResource(ctx context.Context, path string, attester Attester) ([]byte, error) {
	resource, err := resourcePath(path)
	if err != nil {
		return nil, err
	}
	hc, base, err := c.httpClient()
	if err != nil {
		return nil, err
	}
	if c.HTTPClient == nil {
		// The transport is this session's: leave no connection open.
		defer hc.CloseIdleConnections()
	}
	priv, jwk, err := c.newKey()
	if err != nil {
		return nil, fmt.Errorf("generate session key: %w", err)
	}

	var ch struct {
		Nonce string `json:"nonce"`
	}
	cookies, err := post(ctx, hc, base+"/auth", nil, map[string]any{
		"version": protocolVersion, "tee": attester.TEE(), "extra-params": map[string]any{},
	}, &ch)
	if err != nil {
		return nil, fmt.Errorf("kbs auth: %w", err)
	}
	if ch.Nonce == "" {
		return nil, errors.New("kbs auth: empty nonce")
	}
	rd, err := attest.ReportDataWithClaims(ch.Nonce, jwk.Key, c.Claims)
	if err != nil {
		return nil, err
	}
	evidence, err := attester.Evidence(ctx, rd)
	if err != nil {
		return nil, fmt.Errorf("get %s evidence: %w", attester.TEE(), err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	attestation := map[string]any{"tee-pubkey": jwk, "tee-evidence": json.RawMessage(evidence)}
	if c.Claims != nil && len(c.Claims.Images) > 0 {
		attestation["runtime-claims"] = c.Claims
	}
	if _, err := post(ctx, hc, base+"/attest", cookies, attestation, &tok); err != nil {
		return nil, fmt.Errorf("kbs attest: %w", err)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/resource/"+resource, nil)
	if err != nil {
		return nil, err
	}
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	body, _, err := do(hc, req)
	if err != nil {
		return nil, fmt.Errorf("kbs resource %s: %w", resource, err)
	}
	secret, err := decryptResource(body, priv)
	if err != nil {
		return nil, fmt.Errorf("kbs resource %s: %w", resource, err)
	}
	return secret, nil
}

// decryptResource opens the broker's response: a JWE in the flattened
// JSON serialization, encrypted to the session key with RSA-OAEP-256 or
// ECDH-ES+A256KW and A256GCM; no other algorithm is accepted. The body
// is untrusted until it decrypts: anyone on the path may have sent it.
func decryptResource(body []byte, priv any) ([]byte, error) {
	jwe, err := jose.ParseEncryptedJSON(string(body),
		[]jose.KeyAlgorithm{jose.RSA_OAEP_256, jose.ECDH_ES_A256KW},
		[]jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return nil, fmt.Errorf("parse JWE: %w", err)
	}
	secret, err := jwe.Decrypt(priv)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	return secret, nil
}

func resourcePath(p string) (string, error) {
	if rest, ok := strings.CutPrefix(p, "kbs://"); ok {
		// kbs://<host>/repo/type/tag: the host part is the broker's,
		// which the Client already names.
		_, p, _ = strings.Cut(rest, "/")
	}
	p = strings.TrimPrefix(p, "/")
	parts := strings.Split(p, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", fmt.Errorf("resource path %q: want repository/type/tag", p)
	}
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/"), nil
}

func (c *Client) httpClient() (*http.Client, string, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, "", fmt.Errorf("kbs url: %w", err)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !c.AllowHTTP {
			return nil, "", fmt.Errorf("kbs url %s: plain http needs AllowHTTP", c.URL)
		}
	default:
		return nil, "", fmt.Errorf("kbs url %s: scheme must be https", c.URL)
	}
	base := strings.TrimRight(c.URL, "/") + "/kbs/v0"
	if c.HTTPClient != nil {
		if c.CertFingerprint != "" || c.Dial != nil {
			return nil, "", errors.New("kbs client: HTTPClient excludes CertFingerprint and Dial")
		}
		return c.HTTPClient, base, nil
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}, DialContext: c.Dial}
	if c.CertFingerprint != "" {
		pin, err := hex.DecodeString(strings.ReplaceAll(c.CertFingerprint, ":", ""))
		if err != nil || len(pin) != sha256.Size {
			return nil, "", fmt.Errorf("kbs certificate fingerprint %q: want %d hex bytes", c.CertFingerprint, sha256.Size)
		}
		// Trust comes from the pin alone: chain and name checks are
		// replaced, not skipped, by VerifyConnection.
		tr.TLSClientConfig.InsecureSkipVerify = true
		tr.TLSClientConfig.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("kbs presented no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(got[:], pin) != 1 {
				return fmt.Errorf("kbs certificate fingerprint %x does not match the pin", got)
			}
			return nil
		}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, base, nil
}

// newKey returns the session's private key (*rsa.PrivateKey or
// *ecdsa.PrivateKey, as go-jose decrypts with) and its public JWK.
func (c *Client) newKey() (any, *jose.JSONWebKey, error) {
	switch c.KeyType {
	case RSA3072:
		k, err := rsa.GenerateKey(rand.Reader, 3072)
		if err != nil {
			return nil, nil, err
		}
		return k, &jose.JSONWebKey{Key: k.Public(), Algorithm: string(jose.RSA_OAEP_256)}, nil
	case ECP256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		return k, &jose.JSONWebKey{Key: k.Public(), Algorithm: string(jose.ECDH_ES_A256KW)}, nil
	default:
		return nil, nil, fmt.Errorf("unknown key type %d", c.KeyType)
	}
}

func post(ctx context.Context, hc *http.Client, u string, cookies []*http.Cookie, in, out any) ([]*http.Cookie, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	data, resp, err := do(hc, req)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	if len(cookies) == 0 {
		cookies = resp.Cookies()
	}
	return cookies, nil
}

func do(hc *http.Client, req *http.Request) ([]byte, *http.Response, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		se := &ServerError{Status: resp.StatusCode, TEE: resp.Header.Get("Kbs-Tee")}
		var info struct {
			Type   string `json:"type"`
			Detail string `json:"detail"`
		}
		if json.Unmarshal(data, &info) == nil {
			se.Type, se.Detail = info.Type, info.Detail
		} else {
			se.Detail = strings.TrimSpace(string(data))
		}
		return nil, nil, se
	}
	return data, resp, nil
}
