package kbs

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/containerd/log"
	"github.com/go-jose/go-jose/v4"
)

// segmentRE is what a repository, type or tag may be: no separators, no
// dot-only names, so a resource path can never escape its namespace.
var segmentRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// resourcePath returns "repo/type/tag" from the request's path values.
func resourcePath(r *http.Request) (string, error) {
	return joinResource(r.PathValue("repo"), r.PathValue("type"), r.PathValue("tag"))
}

// joinResource validates the three segments of a resource path and joins them.
func joinResource(parts ...string) (string, error) {
	if len(parts) != 3 {
		return "", fmt.Errorf("resource path %q: want repository/type/tag", strings.Join(parts, "/"))
	}
	for _, p := range parts {
		if !segmentRE.MatchString(p) {
			return "", fmt.Errorf("invalid resource path segment %q", p)
		}
	}
	return strings.Join(parts, "/"), nil
}

// resourceClaims authenticates a resource request: an attestation token
// as Bearer, else the attested session of the cookie.
func (s *Server) resourceClaims(r *http.Request) (tokenClaims, string, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			return tokenClaims{}, "", errors.New("authorization is not a Bearer token")
		}
		tc, err := s.tokens.verify(token, s.cfg.Now())
		return tc, "token", err
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return tokenClaims{}, "", errNoSession
	}
	sess, a, err := s.attestedSession(c.Value)
	if err != nil {
		tc := tokenClaims{}
		if sess != nil {
			tc.TEE = sess.tee
		}
		return tc, shortID(c.Value), err
	}
	return a.claims, shortID(sess.id), nil
}

func (s *Server) handleGetResource(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	logger := log.G(ctx).WithField("remote", r.RemoteAddr)
	resource, err := resourcePath(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, problemInvalidRequest, "", err.Error())
		return
	}
	logger = logger.WithField("resource", resource)
	tc, via, err := s.resourceClaims(r)
	logger = logger.WithFields(log.Fields{"tee": tc.TEE, "session": via})
	if err != nil {
		logger.WithFields(log.Fields{"decision": "refuse", "reason": err.Error()}).Warn("kbs resource: not attested")
		writeError(w, http.StatusUnauthorized, problemInvalidSession, tc.TEE, err.Error())
		return
	}
	if err := s.currentPolicy().AllowResource(resource, tc.session()); err != nil {
		logger.WithFields(log.Fields{"decision": "refuse", "reason": err.Error()}).Warn("kbs resource: denied by resource policy")
		writeError(w, http.StatusForbidden, problemPolicyDeny, tc.TEE, err.Error())
		return
	}
	secret, err := s.store.get(resource)
	if errors.Is(err, ErrNotFound) {
		logger.WithFields(log.Fields{"decision": "refuse", "reason": "not found"}).Warn("kbs resource: not found")
		writeError(w, http.StatusNotFound, problemResourceNotFound, tc.TEE, fmt.Sprintf("resource %s not found", resource))
		return
	}
	if err != nil {
		logger.WithError(err).Error("kbs resource: read store")
		writeError(w, http.StatusInternalServerError, problemInternal, tc.TEE, "read resource")
		return
	}
	jwe, err := encryptTo(tc.TEEPubKey, secret)
	clear(secret)
	if err != nil {
		logger.WithError(err).Error("kbs resource: encrypt")
		writeError(w, http.StatusInternalServerError, problemInternal, tc.TEE, "encrypt resource")
		return
	}
	logger.WithFields(log.Fields{"decision": "release", "measurement": tc.Measurement}).Info("kbs resource: released")
	w.Header().Set(teeHeader, tc.TEE)
	w.Header().Set("Content-Type", "application/jwe")
	_, _ = w.Write([]byte(jwe))
}

// encryptTo seals plaintext to the guest's key as a JWE in the flattened
// JSON serialization, which is the spec's Response: RSA-OAEP-256 for RSA
// keys, ECDH-ES+A256KW for EC keys, content with A256GCM.
func encryptTo(key *jose.JSONWebKey, plaintext []byte) (string, error) {
	var alg jose.KeyAlgorithm
	switch key.Key.(type) {
	case *rsa.PublicKey:
		alg = jose.RSA_OAEP_256
	case *ecdsa.PublicKey:
		alg = jose.ECDH_ES_A256KW
	default:
		return "", fmt.Errorf("unsupported key type %T", key.Key)
	}
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: alg, Key: key.Key}, nil)
	if err != nil {
		return "", err
	}
	obj, err := enc.Encrypt(plaintext)
	if err != nil {
		return "", err
	}
	return obj.FullSerialize(), nil
}
