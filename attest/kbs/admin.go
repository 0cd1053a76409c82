package kbs

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	// maxResourceSize bounds one registered resource.
	maxResourceSize = 4 << 20
	// adminLeeway tolerates clock skew between the admin and the broker.
	adminLeeway = time.Minute
	// policyEngine is the only AttestationPolicy.type this broker knows:
	// the JSON document of doc.go.
	policyEngine = "scc"
)

// ErrAdminAuth means an admin request's bearer token is missing or invalid.
var ErrAdminAuth = errors.New("admin authentication failed")

// NewAdminToken signs an admin bearer token: a JWT with alg EdDSA and iat,
// exp claims, as Trustee's admin tokens are. The broker accepts it until
// exp, for any number of requests.
func NewAdminToken(key ed25519.PrivateKey, now time.Time, ttl time.Duration) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	return jwt.Signed(signer).Claims(jwt.Claims{
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(ttl)),
	}).Serialize()
}

// LoadAdminKey reads an Ed25519 public key in PEM (PKIX "PUBLIC KEY"),
// the format `openssl pkey -pubout` writes.
func LoadAdminKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read admin key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("admin key %s: no PUBLIC KEY PEM block", path)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("admin key %s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("admin key %s: %T is not Ed25519", path, k)
	}
	return pub, nil
}

func (s *Server) checkAdmin(r *http.Request) error {
	if s.cfg.AdminKey == nil {
		return fmt.Errorf("%w: admin API disabled (no admin key configured)", ErrAdminAuth)
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return fmt.Errorf("%w: no Bearer token", ErrAdminAuth)
	}
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrAdminAuth, err)
	}
	var c jwt.Claims
	if err := parsed.Claims(s.cfg.AdminKey, &c); err != nil {
		return fmt.Errorf("%w: %v", ErrAdminAuth, err)
	}
	if c.Expiry == nil || c.IssuedAt == nil {
		return fmt.Errorf("%w: token needs iat and exp", ErrAdminAuth)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Time: s.cfg.Now()}, adminLeeway); err != nil {
		return fmt.Errorf("%w: %v", ErrAdminAuth, err)
	}
	return nil
}

// admin wraps an admin handler with the bearer token check.
func (s *Server) admin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.checkAdmin(r); err != nil {
			log.G(r.Context()).WithFields(log.Fields{"remote": r.RemoteAddr, "path": r.URL.Path, "decision": "refuse", "reason": err.Error()}).Warn("kbs admin: refused")
			writeError(w, http.StatusUnauthorized, problemAdminAuthFailed, "", err.Error())
			return
		}
		next(w, r)
	}
}

func (s *Server) handleSetResource(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	resource, err := resourcePath(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, problemInvalidRequest, "", err.Error())
		return
	}
	secret, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxResourceSize))
	if err != nil {
		writeError(w, http.StatusBadRequest, problemInvalidRequest, "", "read resource: "+err.Error())
		return
	}
	if len(secret) == 0 {
		writeError(w, http.StatusBadRequest, problemInvalidRequest, "", "empty resource")
		return
	}
	err = s.SetResource(ctx, resource, secret)
	clear(secret)
	if err != nil {
		log.G(ctx).WithError(err).WithField("resource", resource).Error("kbs admin: store resource")
		writeError(w, http.StatusInternalServerError, problemInternal, "", "store resource")
		return
	}
	w.WriteHeader(http.StatusOK)
}

// SetResource registers (or replaces) the secret at "repository/type/tag",
// as the admin endpoint does.
func (s *Server) SetResource(ctx context.Context, resource string, secret []byte) error {
	resource, err := joinResource(strings.Split(resource, "/")...)
	if err != nil {
		return err
	}
	if err := s.store.put(resource, secret); err != nil {
		return err
	}
	log.G(ctx).WithField("resource", resource).Info("kbs admin: resource registered")
	return nil
}

// attestationPolicyRequest is the spec's AttestationPolicy.
type attestationPolicyRequest struct {
	Type     string `json:"type"`
	PolicyID string `json:"policy_id"`
	Policy   string `json:"policy"`
}

// resourcePolicyRequest is the spec's ResourcePolicy.
type resourcePolicyRequest struct {
	Policy string `json:"policy"`
}

// Attestation policy ids: the spec's AttestationPolicy names one policy of
// several; this broker's document has two parts set this way.
const (
	// policyIDDefault sets the "attestation" object: TEE types and their terms.
	policyIDDefault = "default"
	// policyIDWorkloads sets the "workloads" object: named reference values.
	policyIDWorkloads = "workloads"
)

func (s *Server) handleSetAttestationPolicy(w http.ResponseWriter, r *http.Request) {
	var req attestationPolicyRequest
	doc, err := readPolicyRequest(w, r, &req, func() string { return req.Policy })
	if err == nil && req.Type != policyEngine {
		err = fmt.Errorf("policy type %q not supported (use %q)", req.Type, policyEngine)
	}
	var change func(*Policy)
	if err == nil {
		switch req.PolicyID {
		case policyIDDefault:
			var att map[string]TEEPolicy
			err = decodeStrict(doc, &att)
			change = func(p *Policy) { p.Attestation = att }
		case policyIDWorkloads:
			var wl map[string]Workload
			err = decodeStrict(doc, &wl)
			change = func(p *Policy) { p.Workloads = wl }
		default:
			err = fmt.Errorf("policy_id %q not supported (%q or %q)", req.PolicyID, policyIDDefault, policyIDWorkloads)
		}
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, problemInvalidRequest, "", err.Error())
		return
	}
	s.updatePolicy(w, r, change)
}

func (s *Server) handleSetResourcePolicy(w http.ResponseWriter, r *http.Request) {
	var req resourcePolicyRequest
	doc, err := readPolicyRequest(w, r, &req, func() string { return req.Policy })
	var res map[string]ResourceRule
	if err == nil {
		err = decodeStrict(doc, &res)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, problemInvalidRequest, "", err.Error())
		return
	}
	s.updatePolicy(w, r, func(p *Policy) { p.Resources = res })
}

// readPolicyRequest decodes the request into req and returns the policy
// document that field() then holds, base64-decoded (standard or URL
// alphabet, padded or not: KBS clients differ).
func readPolicyRequest(w http.ResponseWriter, r *http.Request, req any, field func() string) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	if err := decodeStrict(body, req); err != nil {
		return nil, fmt.Errorf("decode request: %w", err)
	}
	b64 := strings.TrimRight(field(), "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if doc, err := enc.DecodeString(b64); err == nil {
			return doc, nil
		}
	}
	return nil, errors.New("policy is not base64")
}

func (s *Server) updatePolicy(w http.ResponseWriter, r *http.Request, change func(*Policy)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.policy
	change(&p)
	if err := s.setPolicyLocked(r.Context(), p); err != nil {
		if errors.Is(err, ErrInvalidPolicyDocument) {
			writeError(w, http.StatusBadRequest, problemInvalidRequest, "", err.Error())
			return
		}
		log.G(r.Context()).WithError(err).Error("kbs admin: store policy")
		writeError(w, http.StatusInternalServerError, problemInternal, "", "store policy")
		return
	}
	w.WriteHeader(http.StatusOK)
}
