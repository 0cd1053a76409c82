package kbs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/containerd/log"
	"github.com/go-jose/go-jose/v4"

	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
)

// minRSABits is the smallest tee-pubkey modulus accepted.
const minRSABits = 2048

var (
	// ErrTEENotAllowed means the policy does not allow the evidence's TEE type.
	ErrTEENotAllowed = errors.New("TEE type not allowed by attestation policy")
	// ErrBadRequest means an attestation request body that does not decode.
	ErrBadRequest = errors.New("malformed attestation request")
	// errTEEMismatch means the evidence is for another TEE than the session.
	errTEEMismatch = errors.New("evidence TEE differs from the session's")
)

// attestationRequest is the spec's Attestation.
type attestationRequest struct {
	TEEPubKey   json.RawMessage `json:"tee-pubkey"`
	TEEEvidence json.RawMessage `json:"tee-evidence"`
}

// attestationToken is the spec's AttestationToken.
type attestationToken struct {
	Token string `json:"token"`
}

// DecodeAttestation parses an untrusted /attest request body: the guest's
// public key (a JWK usable as a JWE recipient) and the evidence. The
// evidence may be the JSON object the spec describes or, as some KBS
// clients send it, a string holding that object.
func DecodeAttestation(body []byte) (*jose.JSONWebKey, snp.Evidence, error) {
	var req attestationRequest
	if err := decodeStrict(body, &req); err != nil {
		return nil, snp.Evidence{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if len(req.TEEPubKey) == 0 || len(req.TEEEvidence) == 0 {
		return nil, snp.Evidence{}, fmt.Errorf("%w: tee-pubkey and tee-evidence are required", ErrBadRequest)
	}
	key, err := parseTEEPubKey(req.TEEPubKey)
	if err != nil {
		return nil, snp.Evidence{}, err
	}
	raw := []byte(req.TEEEvidence)
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, snp.Evidence{}, fmt.Errorf("%w: tee-evidence: %v", ErrBadRequest, err)
		}
		raw = []byte(s)
	}
	ev, err := snp.DecodeEvidence(raw)
	if err != nil {
		return nil, snp.Evidence{}, fmt.Errorf("%w: tee-evidence: %w", ErrBadRequest, err)
	}
	return key, ev, nil
}

// parseTEEPubKey accepts a public RSA (>= 2048 bits, for RSA-OAEP-256) or
// EC P-256/P-384/P-521 (for ECDH-ES+A256KW) JWK.
func parseTEEPubKey(raw []byte) (*jose.JSONWebKey, error) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("%w: tee-pubkey: %v", ErrBadRequest, err)
	}
	if !k.IsPublic() || !k.Valid() {
		return nil, fmt.Errorf("%w: tee-pubkey must be a valid public key", ErrBadRequest)
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("%w: tee-pubkey RSA modulus is %d bits, want >= %d", ErrBadRequest, pub.N.BitLen(), minRSABits)
		}
		if k.Algorithm != "" && k.Algorithm != string(jose.RSA_OAEP_256) {
			return nil, fmt.Errorf("%w: tee-pubkey alg %q not supported for RSA (use %s)", ErrBadRequest, k.Algorithm, jose.RSA_OAEP_256)
		}
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, fmt.Errorf("%w: tee-pubkey curve not supported", ErrBadRequest)
		}
		if k.Algorithm != "" && k.Algorithm != string(jose.ECDH_ES_A256KW) {
			return nil, fmt.Errorf("%w: tee-pubkey alg %q not supported for EC (use %s)", ErrBadRequest, k.Algorithm, jose.ECDH_ES_A256KW)
		}
	default:
		return nil, fmt.Errorf("%w: tee-pubkey type %T not supported", ErrBadRequest, k.Key)
	}
	return &k, nil
}

func (s *Server) handleAttest(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, ch, err := s.takeChallenge(r)
	tee := ""
	if sess != nil {
		tee = sess.tee
	}
	logger := log.G(ctx).WithFields(log.Fields{"tee": tee, "remote": r.RemoteAddr})
	if sess != nil {
		logger = logger.WithField("session", shortID(sess.id))
	}
	if err != nil {
		logger.WithFields(log.Fields{"decision": "refuse", "reason": err.Error()}).Warn("kbs attest: invalid session")
		writeError(w, http.StatusUnauthorized, problemInvalidSession, tee, err.Error())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, problemInvalidRequest, tee, "read request: "+err.Error())
		return
	}
	key, ev, err := DecodeAttestation(body)
	if err != nil {
		logger.WithFields(log.Fields{"decision": "refuse", "reason": err.Error()}).Warn("kbs attest: bad request")
		writeError(w, http.StatusBadRequest, problemInvalidRequest, tee, err.Error())
		return
	}
	claims, report, err := s.verify(ctx, sess, ch, key, ev)
	if err != nil {
		status, problem := attestStatus(err)
		logger.WithFields(log.Fields{"decision": "refuse", "reason": err.Error()}).Warn("kbs attest: evidence refused")
		writeError(w, status, problem, tee, err.Error())
		return
	}
	now := s.cfg.Now()
	token, tc, err := s.tokens.issue(now, s.cfg.SessionTTL, claims, key, report)
	if err != nil {
		logger.WithError(err).Error("kbs attest: sign token")
		writeError(w, http.StatusInternalServerError, problemInternal, tee, "sign token")
		return
	}
	sess.state = &attested{claims: tc}
	sess.expires = now.Add(s.cfg.SessionTTL)
	if err := s.addSession(sess, now); err != nil {
		writeError(w, http.StatusServiceUnavailable, problemUnavailable, tee, err.Error())
		return
	}
	entry := logger.WithFields(log.Fields{"decision": "accept", "measurement": claims.Measurement, "reason": report})
	if tee == sim.TEE {
		entry.Warn("kbs attest: SIMULATED TEE accepted by explicit policy; it offers no security")
	} else {
		entry.Info("kbs attest: evidence accepted")
	}
	writeJSON(w, "application/json", tee, attestationToken{Token: token})
}

// verify checks the evidence against the policy for the session's TEE,
// with REPORT_DATA bound to the session nonce and the request's key.
func (s *Server) verify(ctx context.Context, sess *session, ch *challenged, key *jose.JSONWebKey, ev snp.Evidence) (*snp.Claims, string, error) {
	if ev.TEE != sess.tee {
		return nil, "", fmt.Errorf("%w: session %q, evidence %q", errTEEMismatch, sess.tee, ev.TEE)
	}
	rd, err := attest.ReportData(ch.nonce, key.Key)
	if err != nil {
		return nil, "", err
	}
	tp, listed := s.currentPolicy().Attestation[sess.tee]
	sp, err := tp.snpPolicy(rd[:])
	if err != nil {
		return nil, "", err
	}
	now := s.cfg.Now()
	var claims *snp.Claims
	switch sess.tee {
	case snp.TEE:
		if !listed || !tp.Allow {
			return nil, "", fmt.Errorf("%w: %s", ErrTEENotAllowed, sess.tee)
		}
		claims, err = snp.Verify(ctx, ev, snp.Options{TrustedRoots: s.cfg.SNPRoots, Getter: s.cfg.SNPGetter, Now: now, Policy: sp})
	case sim.TEE:
		var roots []sim.RootFingerprint
		if tp.Allow {
			roots = tp.Roots
		}
		claims, err = sim.Verify(ctx, ev, sim.Options{AllowSim: roots, Now: now, Policy: sp})
	default:
		return nil, "", fmt.Errorf("%w: %s", ErrTEENotAllowed, sess.tee)
	}
	if err != nil {
		return nil, "", err
	}
	report := fmt.Sprintf("%s evidence accepted: signature and certificate chain verified, measurement %s in the policy's reference values, REPORT_DATA bound to the session nonce and tee-pubkey", claims.TEE, claims.Measurement)
	if claims.TEE == sim.TEE {
		report = "SIMULATED TEE (no hardware protection): " + report
	}
	return claims, report, nil
}

// policyErrors are refusals by policy (403); every other verification
// failure means the evidence itself is not acceptable (401).
var policyErrors = []error{
	ErrTEENotAllowed,
	sim.ErrSimNotAllowed,
	snp.ErrInvalidPolicy,
	snp.ErrMeasurementMismatch,
	snp.ErrDebugRefused,
	snp.ErrMigrationAgentRefused,
	snp.ErrHostDataMismatch,
	snp.ErrTCBTooLow,
	snp.ErrPolicyViolation,
}

func attestStatus(err error) (int, string) {
	for _, pe := range policyErrors {
		if errors.Is(err, pe) {
			return http.StatusForbidden, problemPolicyDeny
		}
	}
	return http.StatusUnauthorized, problemAttestationFailed
}
