package kbs

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/google/go-sev-guest/verify/trust"
)

const (
	apiPrefix = "/kbs/v0"
	// policyFile holds the current policy document; it is not secret but
	// is written 0600 like everything else in the data dir.
	policyFile = "policy.json"

	defaultChallengeTTL = 5 * time.Minute
	defaultSessionTTL   = 5 * time.Minute
	// maxSessions bounds the memory unauthenticated /auth calls can take.
	maxSessions = 10000
)

// Config configures a Server.
type Config struct {
	// DataDir holds the persistent state: TLS certificate and key, token
	// signing key, resource store and its key, policy. Created 0700.
	DataDir string
	// AdminKey verifies admin bearer tokens (EdDSA JWTs). Nil disables
	// the admin endpoints: they refuse every request.
	AdminKey ed25519.PublicKey
	// ChallengeTTL is how long a nonce from /auth stays usable (once).
	// Zero means 5 minutes.
	ChallengeTTL time.Duration
	// SessionTTL is how long an attested session (and its token) may
	// fetch resources. Zero means 5 minutes.
	SessionTTL time.Duration
	// SNPRoots are the trusted AMD roots per product line; nil means
	// AMD's roots embedded in go-sev-guest.
	SNPRoots map[string][]*trust.AMDRootCerts
	// SNPGetter lets the SNP verifier fetch missing certificates from
	// AMD; nil (the default) keeps verification offline.
	SNPGetter trust.HTTPSGetter
	// TDXCollateralDir holds the Intel PCS collateral that rates TD
	// platforms' TCB level (tdx.LoadCollateral's files), read at each TDX
	// attestation so that it can be refreshed in place. Empty refuses
	// TDX evidence: its TCB level cannot be judged.
	TDXCollateralDir string
	// TDXRoots anchor the PCK and PCS chains; nil means Intel's SGX Root CA.
	TDXRoots *x509.CertPool
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time
}

// Server is the key broker: the HTTP handlers of the KBS protocol, the
// session table, the policy and the resource store.
type Server struct {
	cfg    Config
	store  *store
	tokens *tokenSigner

	mu       sync.Mutex
	policy   Policy              // guarded by mu
	sessions map[string]*session // session id -> session, guarded by mu
}

// New opens (or initialises) the data dir and returns a server with the
// policy last stored there, or the default policy (refuse every TEE).
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("kbs: no data dir")
	}
	if cfg.ChallengeTTL <= 0 {
		cfg.ChallengeTTL = defaultChallengeTTL
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = defaultSessionTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	st, err := openStore(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	tokens, err := openTokenSigner(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, store: st, tokens: tokens, sessions: map[string]*session{}}
	data, err := os.ReadFile(filepath.Join(cfg.DataDir, policyFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		log.G(ctx).Info("kbs: no policy stored; default policy refuses every TEE")
	case err != nil:
		return nil, fmt.Errorf("read policy: %w", err)
	default:
		if s.policy, err = ParsePolicy(data); err != nil {
			return nil, fmt.Errorf("stored policy: %w", err)
		}
	}
	if cfg.AdminKey == nil {
		log.G(ctx).Warn("kbs: no admin key; admin endpoints are disabled")
	}
	return s, nil
}

// SetPolicy replaces the whole policy and persists it.
func (s *Server) SetPolicy(ctx context.Context, p Policy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setPolicyLocked(ctx, p)
}

// setPolicyLocked must be called with mu held.
func (s *Server) setPolicyLocked(ctx context.Context, p Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(s.cfg.DataDir, policyFile), data, 0o600); err != nil {
		return fmt.Errorf("write policy: %w", err)
	}
	s.policy = p
	compact, _ := json.Marshal(p)
	log.G(ctx).WithField("policy", string(compact)).Info("kbs: policy updated")
	return nil
}

func (s *Server) currentPolicy() Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy
}

// Handler returns the HTTP handler of the KBS API under /kbs/v0.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+apiPrefix+"/auth", s.handleAuth)
	mux.HandleFunc("POST "+apiPrefix+"/attest", s.handleAttest)
	mux.HandleFunc("GET "+apiPrefix+"/resource/{repo}/{type}/{tag}", s.handleGetResource)
	mux.HandleFunc("POST "+apiPrefix+"/resource/{repo}/{type}/{tag}", s.admin(s.handleSetResource))
	mux.HandleFunc("POST "+apiPrefix+"/attestation-policy", s.admin(s.handleSetAttestationPolicy))
	mux.HandleFunc("POST "+apiPrefix+"/resource-policy", s.admin(s.handleSetResourcePolicy))
	return mux
}

// Serve serves the API on ln until ctx is done: HTTPS with the data dir's
// self-signed certificate, or plain HTTP when insecureHTTP is set.
func (s *Server) Serve(ctx context.Context, ln net.Listener, insecureHTTP bool) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	logger := log.G(ctx).WithField("address", ln.Addr().String())
	if insecureHTTP {
		logger.Warn("kbs: serving plain HTTP (--insecure-http): the connection is not authenticated")
	} else {
		host, _, _ := net.SplitHostPort(ln.Addr().String())
		cert, fp, err := LoadOrCreateCert(s.cfg.DataDir, host)
		if err != nil {
			return err
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
		logger = logger.WithField("sha256", fp)
		logger.Info("kbs: serving HTTPS; guests pin this certificate fingerprint")
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			return err
		}
		return nil
	}
}

// errorInfo is the spec's ErrorInformation (RFC 7807 problem details),
// extended with the TEE type of the session when it is known.
type errorInfo struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
	TEE    string `json:"tee,omitempty"`
}

// Problem types, the last path element of ErrorInformation.type.
const (
	problemInvalidRequest    = "InvalidRequest"
	problemInvalidSession    = "InvalidSession"
	problemAttestationFailed = "AttestationFailed"
	problemPolicyDeny        = "PolicyDeny"
	problemResourceNotFound  = "ResourceNotFound"
	problemAdminAuthFailed   = "AdminAuthFailed"
	problemInternal          = "InternalError"
	problemUnavailable       = "ServiceUnavailable"
	problemTypePrefix        = "https://github.com/confidential-containers/kbs/errors/"
)

// teeHeader carries the TEE type of the session on every response that has one.
const teeHeader = "Kbs-Tee"

func writeError(w http.ResponseWriter, status int, problem, tee, detail string) {
	if tee != "" {
		w.Header().Set(teeHeader, tee)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorInfo{Type: problemTypePrefix + problem, Detail: detail, TEE: tee})
}

func writeJSON(w http.ResponseWriter, contentType, tee string, v any) {
	if tee != "" {
		w.Header().Set(teeHeader, tee)
	}
	w.Header().Set("Content-Type", contentType)
	_ = json.NewEncoder(w).Encode(v)
}
