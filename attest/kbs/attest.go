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
	"github.com/sccontainers/scc/attest/policy"
	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
	"github.com/sccontainers/scc/attest/tdx"
	"github.com/sccontainers/scc/attest/verifier"
	"github.com/sccontainers/scc/attest/vtpm"
)

// minRSABits is the smallest tee-pubkey modulus accepted.
const minRSABits = 2048

// ErrBadRequest means an attestation request body that does not decode.
var ErrBadRequest = errors.New("malformed attestation request")

// attestationRequest is the spec's Attestation.
type attestationRequest struct {
	TEEPubKey   json.RawMessage `json:"tee-pubkey"`
	TEEEvidence json.RawMessage `json:"tee-evidence"`
	// RuntimeClaims are scc's: what the guest states about the images it
	// runs, bound into REPORT_DATA (attest.ReportDataWithClaims).
	RuntimeClaims json.RawMessage `json:"runtime-claims,omitempty"`
}

// attestationToken is the spec's AttestationToken.
type attestationToken struct {
	Token string `json:"token"`
}

// DecodeAttestation parses an untrusted /attest request body: the guest's
// public key (a JWK usable as a JWE recipient), the evidence, returned
// as the JSON object the TEE's verifier decodes (see package verifier),
// and the guest's runtime claims, nil if it sent none. The evidence may
// be the JSON object the spec describes or, as some KBS clients send it,
// a string holding that object.
func DecodeAttestation(body []byte) (*jose.JSONWebKey, []byte, *attest.RuntimeClaims, error) {
	var req attestationRequest
	if err := decodeStrict(body, &req); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if len(req.TEEPubKey) == 0 || len(req.TEEEvidence) == 0 {
		return nil, nil, nil, fmt.Errorf("%w: tee-pubkey and tee-evidence are required", ErrBadRequest)
	}
	key, err := parseTEEPubKey(req.TEEPubKey)
	if err != nil {
		return nil, nil, nil, err
	}
	raw := []byte(req.TEEEvidence)
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: tee-evidence: %v", ErrBadRequest, err)
		}
		raw = []byte(s)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: tee-evidence is not a JSON object: %v", ErrBadRequest, err)
	}
	var claims *attest.RuntimeClaims
	if len(req.RuntimeClaims) > 0 && string(req.RuntimeClaims) != "null" {
		c, err := attest.ParseRuntimeClaims(req.RuntimeClaims)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: runtime-claims: %v", ErrBadRequest, err)
		}
		claims = &c
	}
	return key, raw, claims, nil
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
	key, evidence, runtimeClaims, err := DecodeAttestation(body)
	if err != nil {
		logger.WithFields(log.Fields{"decision": "refuse", "reason": err.Error()}).Warn("kbs attest: bad request")
		writeError(w, http.StatusBadRequest, problemInvalidRequest, tee, err.Error())
		return
	}
	claims, report, err := s.verify(ctx, sess, ch, key, evidence, runtimeClaims)
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
	entry := logger.WithFields(log.Fields{"decision": "accept", "measurement": claims.Measurement, "images": imageDigests(claims.Images), "reason": report})
	if tee == sim.TEE {
		entry.Warn("kbs attest: SIMULATED TEE accepted by explicit policy; it offers no security")
	} else {
		entry.Info("kbs attest: evidence accepted")
	}
	writeJSON(w, "application/json", tee, attestationToken{Token: token})
}

// verify checks the evidence against the policy for the session's TEE,
// with REPORT_DATA (a vTPM quote's qualifying data) bound to the session
// nonce, the request's key and the guest's runtime claims.
func (s *Server) verify(ctx context.Context, sess *session, ch *challenged, key *jose.JSONWebKey, evidence []byte, runtimeClaims *attest.RuntimeClaims) (*verifier.Claims, string, error) {
	rd, err := attest.ReportDataWithClaims(ch.nonce, key.Key, runtimeClaims)
	if err != nil {
		return nil, "", err
	}
	doc := s.currentPolicy()
	opts := verifier.Options{
		Policy:        &doc,
		ReportData:    &rd,
		RuntimeClaims: runtimeClaims,
		Now:           s.cfg.Now(),
		SNPRoots:      s.cfg.SNPRoots,
		SNPGetter:     s.cfg.SNPGetter,
		TDXRoots:      s.cfg.TDXRoots,
	}
	if sess.tee == tdx.TEE && s.cfg.TDXCollateralDir != "" {
		// Read for each attestation: an operator refreshes the files
		// before Intel's nextUpdate without restarting the broker.
		if opts.TDXCollateral, err = tdx.LoadCollateral(s.cfg.TDXCollateralDir); err != nil {
			return nil, "", err
		}
	}
	claims, err := verifier.Verify(ctx, sess.tee, evidence, opts)
	if err != nil {
		return nil, "", err
	}
	var report string
	switch claims.TEE {
	case vtpm.TEE:
		report = fmt.Sprintf("vtpm evidence accepted: quote signed by trusted attestation key %s, PCRs (and event log) checked against the policy's reference values, qualifying data bound to the session nonce and tee-pubkey", claims.PlatformID)
	default:
		report = fmt.Sprintf("%s evidence accepted: signature and certificate chain verified, measurement %s in the policy's reference values, REPORT_DATA bound to the session nonce and tee-pubkey", claims.TEE, claims.Measurement)
	}
	if len(claims.Workloads) > 0 {
		report += fmt.Sprintf(", workloads %v", claims.Workloads)
	}
	if len(claims.Images) > 0 {
		report += fmt.Sprintf(", images %v (%s)", imageDigests(claims.Images), claims.ImagesFrom)
	}
	if claims.TEE == sim.TEE {
		report = "SIMULATED TEE (no hardware protection): " + report
	}
	return claims, report, nil
}

// imageDigests lists the manifest digests of images.
func imageDigests(images []attest.Image) []string {
	out := make([]string, 0, len(images))
	for _, i := range images {
		out = append(out, i.Manifest)
	}
	return out
}

// policyErrors are refusals by policy (403); every other verification
// failure means the evidence itself is not acceptable (401).
var policyErrors = []error{
	policy.ErrTEENotAllowed,
	policy.ErrReferenceMismatch,
	policy.ErrImageNotAllowed,
	sim.ErrSimNotAllowed,
	snp.ErrInvalidPolicy,
	snp.ErrMeasurementMismatch,
	snp.ErrDebugRefused,
	snp.ErrMigrationAgentRefused,
	snp.ErrHostDataMismatch,
	snp.ErrTCBTooLow,
	snp.ErrPolicyViolation,
	tdx.ErrDebug,
	tdx.ErrMeasurementMismatch,
	tdx.ErrPolicy,
	vtpm.ErrUntrustedAK,
	vtpm.ErrPolicy,
}

// malformedErrors mean evidence that does not even decode: a bad request.
var malformedErrors = []error{snp.ErrMalformedEvidence, tdx.ErrMalformed, vtpm.ErrMalformed, vtpm.ErrMalformedLog}

func attestStatus(err error) (int, string) {
	for _, me := range malformedErrors {
		if errors.Is(err, me) {
			return http.StatusBadRequest, problemInvalidRequest
		}
	}
	// A REPORT_DATA mismatch is the evidence failing the session binding,
	// not a policy refusal, although TDX reports it as a mismatch error.
	if errors.Is(err, tdx.ErrReportDataMismatch) {
		return http.StatusUnauthorized, problemAttestationFailed
	}
	for _, pe := range policyErrors {
		if errors.Is(err, pe) {
			return http.StatusForbidden, problemPolicyDeny
		}
	}
	return http.StatusUnauthorized, problemAttestationFailed
}
