package kbs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/verifier"
)

const (
	tokenKeyFile = "token-key.pem"
	tokenIssuer  = "scc-kbs"
)

// ErrInvalidToken means a bearer attestation token failed verification.
var ErrInvalidToken = errors.New("invalid attestation token")

// tokenClaims is the payload of the attestation token (the spec's
// AttestationTokenPayload plus the claims resource policies read).
type tokenClaims struct {
	jwt.Claims
	// Ext repeats exp under the name the KBS spec uses.
	Ext int64 `json:"ext"`
	// JWK is the token signer's public key, a JWK serialized as a string.
	JWK string `json:"jwk"`
	// TEEPubKey is the guest's key that resources are encrypted to.
	TEEPubKey *jose.JSONWebKey `json:"tee-pubkey"`
	// TCBStatus is the JSON of the verified claims (verifier.Claims).
	TCBStatus string `json:"tcb-status"`
	// EvaluationReport says which policy accepted the evidence.
	EvaluationReport string `json:"evaluation-report"`

	TEE         string         `json:"tee"`
	Measurement string         `json:"measurement"`
	Debug       bool           `json:"debug"`
	Workloads   []string       `json:"workloads,omitempty"`
	Images      []attest.Image `json:"images,omitempty"`
}

// tokenSigner signs and verifies attestation tokens with an ES256 key
// persisted in the data dir, so tokens survive a restart.
type tokenSigner struct {
	key    *ecdsa.PrivateKey
	signer jose.Signer
	jwk    string
}

func openTokenSigner(dir string) (*tokenSigner, error) {
	key, err := loadOrCreateECKey(filepath.Join(dir, tokenKeyFile))
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	pub, err := json.Marshal(jose.JSONWebKey{Key: key.Public(), Algorithm: string(jose.ES256), Use: "sig"})
	if err != nil {
		return nil, err
	}
	return &tokenSigner{key: key, signer: signer, jwk: string(pub)}, nil
}

// issue signs a token for verified claims; it also returns the payload,
// which an attested session keeps.
func (s *tokenSigner) issue(now time.Time, ttl time.Duration, claims *verifier.Claims, teeKey *jose.JSONWebKey, report string) (string, tokenClaims, error) {
	status, err := json.Marshal(claims)
	if err != nil {
		return "", tokenClaims{}, err
	}
	exp := now.Add(ttl)
	tc := tokenClaims{
		Claims: jwt.Claims{
			Issuer:    tokenIssuer,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			Expiry:    jwt.NewNumericDate(exp),
		},
		Ext:              exp.Unix(),
		JWK:              s.jwk,
		TEEPubKey:        teeKey,
		TCBStatus:        string(status),
		EvaluationReport: report,
		TEE:              claims.TEE,
		Measurement:      claims.Measurement,
		Debug:            claims.Debug,
		Workloads:        claims.Workloads,
		Images:           claims.Images,
	}
	token, err := jwt.Signed(s.signer).Claims(tc).Serialize()
	return token, tc, err
}

func (s *tokenSigner) verify(token string, now time.Time) (tokenClaims, error) {
	var tc tokenClaims
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return tc, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if err := parsed.Claims(s.key.Public(), &tc); err != nil {
		return tc, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if err := tc.Claims.ValidateWithLeeway(jwt.Expected{Issuer: tokenIssuer, Time: now}, 0); err != nil {
		return tc, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if tc.TEEPubKey == nil || !tc.TEEPubKey.Valid() || !tc.TEEPubKey.IsPublic() {
		return tc, fmt.Errorf("%w: no usable tee-pubkey", ErrInvalidToken)
	}
	return tc, nil
}

// loadOrCreateECKey loads a P-256 private key (PEM, PKCS#8), creating it
// 0600 on first use.
func loadOrCreateECKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := readPrivateFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PRIVATE KEY PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s: not a P-256 key", path)
	}
	return key, nil
}

// readPrivateFile reads a file holding a private key, refusing one that
// group or others may read.
func readPrivateFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %v: must not be readable by group or others", path, fi.Mode().Perm())
	}
	return os.ReadFile(path)
}
