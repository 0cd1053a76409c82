package kbs

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/containerd/log"

	"github.com/sccontainers/scc/attest/policy"
)

// sessionCookie is the cookie the KBS protocol keeps its session in.
const sessionCookie = "kbs-session-id"

// maxRequestBody bounds /auth and /attest bodies; SNP evidence is ~5 KiB.
const maxRequestBody = 1 << 20

// A session goes challenged -> attested, or is deleted. Each state is its
// own type; a request that needs the other state fails.
type session struct {
	id      string
	tee     string
	expires time.Time
	state   sessionState
}

type sessionState interface{ name() string }

// challenged: /auth issued a nonce, which /attest may use once.
type challenged struct{ nonce string }

// attested: evidence verified; the session may fetch resources.
type attested struct{ claims tokenClaims }

func (*challenged) name() string { return "challenged" }
func (*attested) name() string   { return "attested" }

var (
	errNoSession    = errors.New("no kbs-session-id cookie")
	errUnknownSess  = errors.New("unknown session (expired, or its nonce already used)")
	errExpiredSess  = errors.New("session expired")
	errTooManySess  = errors.New("too many sessions")
	errWrongSession = errors.New("session is in the wrong state")
)

// authRequest is the spec's Request.
type authRequest struct {
	Version     string          `json:"version"`
	TEE         string          `json:"tee"`
	ExtraParams json.RawMessage `json:"extra-params,omitempty"`
}

// challengeResponse is the spec's Challenge. extra-params repeats the TEE
// type the session is bound to.
type challengeResponse struct {
	Nonce       string            `json:"nonce"`
	ExtraParams map[string]string `json:"extra-params"`
}

// errBadAuth means an /auth body that does not decode or names no TEE
// type this broker verifies.
var errBadAuth = errors.New("malformed auth request")

// decodeAuthRequest parses an untrusted /auth body: the spec's Request,
// with a version and a TEE type this broker verifies. Members the spec
// adds later are ignored, as Trustee's clients send what they know.
func decodeAuthRequest(body []byte) (authRequest, error) {
	var req authRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return authRequest{}, fmt.Errorf("%w: decode request: %v", errBadAuth, err)
	}
	if req.Version == "" {
		return authRequest{}, fmt.Errorf("%w: request has no version", errBadAuth)
	}
	if !slices.Contains(policy.TEEs, req.TEE) {
		return authRequest{}, fmt.Errorf("%w: unsupported tee %q (supported: %s)", errBadAuth, req.TEE, strings.Join(policy.TEEs, ", "))
	}
	return req, nil
}

func (s *Server) handleAuth(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, problemInvalidRequest, "", "read request: "+err.Error())
		return
	}
	req, err := decodeAuthRequest(body)
	if err != nil {
		log.G(ctx).WithFields(log.Fields{"remote": r.RemoteAddr, "decision": "refuse", "reason": err.Error()}).Warn("kbs auth: bad request")
		writeError(w, http.StatusBadRequest, problemInvalidRequest, "", err.Error())
		return
	}
	logger := log.G(ctx).WithFields(log.Fields{"tee": req.TEE, "remote": r.RemoteAddr})
	nonce, id := randomString(32, base64.StdEncoding.EncodeToString), randomString(32, hex.EncodeToString)
	now := s.cfg.Now()
	sess := &session{id: id, tee: req.TEE, expires: now.Add(s.cfg.ChallengeTTL), state: &challenged{nonce: nonce}}
	if err := s.addSession(sess, now); err != nil {
		logger.WithField("decision", "refuse").WithError(err).Warn("kbs auth: session table full")
		writeError(w, http.StatusServiceUnavailable, problemUnavailable, req.TEE, err.Error())
		return
	}
	logger.WithFields(log.Fields{"session": shortID(id), "decision": "challenge"}).Info("kbs auth: challenge issued")
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    id,
		Path:     apiPrefix,
		Expires:  sess.expires,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	writeJSON(w, "application/json", req.TEE, challengeResponse{Nonce: nonce, ExtraParams: map[string]string{"tee": req.TEE}})
}

func (s *Server) addSession(sess *session, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessions) >= maxSessions {
		for id, old := range s.sessions {
			if !now.Before(old.expires) {
				delete(s.sessions, id)
			}
		}
		if len(s.sessions) >= maxSessions {
			return errTooManySess
		}
	}
	s.sessions[sess.id] = sess
	return nil
}

// takeChallenge removes the session of r if it is challenged and unexpired
// and returns it: its nonce can be used by this request only, whatever the
// outcome.
func (s *Server) takeChallenge(r *http.Request) (*session, *challenged, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, nil, errNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[c.Value]
	if !ok {
		return nil, nil, errUnknownSess
	}
	ch, ok := sess.state.(*challenged)
	if !ok {
		return sess, nil, fmt.Errorf("%w: %s, want challenged", errWrongSession, sess.state.name())
	}
	delete(s.sessions, sess.id)
	if !s.cfg.Now().Before(sess.expires) {
		return sess, nil, fmt.Errorf("%w: challenge issued more than %v ago", errExpiredSess, s.cfg.ChallengeTTL)
	}
	return sess, ch, nil
}

// attestedSession returns the claims of r's attested, unexpired session.
func (s *Server) attestedSession(id string) (*session, *attested, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[id]
	if !ok {
		return nil, nil, errUnknownSess
	}
	if !s.cfg.Now().Before(sess.expires) {
		delete(s.sessions, id)
		return sess, nil, errExpiredSess
	}
	a, ok := sess.state.(*attested)
	if !ok {
		return sess, nil, fmt.Errorf("%w: %s, want attested", errWrongSession, sess.state.name())
	}
	return sess, a, nil
}

func randomString(n int, enc func([]byte) string) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return enc(b)
}

// shortID is enough of a session id to correlate log lines without
// logging a bearer secret.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
