package sim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// credentialsFile holds the authority: ARK, ASK and VCEK certificates and
// the VCEK private key, PEM. The ARK and ASK private keys are discarded
// once the chain is made: nothing else is ever signed with them.
const credentialsFile = "sim-authority.pem"

// RootFingerprint identifies a simulated root of trust: the SHA-256 of its
// ARK certificate (DER). A verifier lists the fingerprints it accepts.
type RootFingerprint [sha256.Size]byte

// String returns the fingerprint in lower-case hex.
func (f RootFingerprint) String() string { return hex.EncodeToString(f[:]) }

// MarshalText encodes the fingerprint as hex, for JSON policies.
func (f RootFingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText parses hex, as ParseRootFingerprint.
func (f *RootFingerprint) UnmarshalText(b []byte) error {
	p, err := ParseRootFingerprint(string(b))
	if err != nil {
		return err
	}
	*f = p
	return nil
}

// ParseRootFingerprint parses 64 hex digits, optionally separated by colons.
func ParseRootFingerprint(s string) (RootFingerprint, error) {
	var f RootFingerprint
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil || len(b) != len(f) {
		return f, fmt.Errorf("sim root fingerprint %q: want %d hex bytes", s, len(f))
	}
	copy(f[:], b)
	return f, nil
}

func fingerprint(cert *x509.Certificate) RootFingerprint { return sha256.Sum256(cert.Raw) }

// Authority is a simulated AMD key chain: ARK -> ASK -> VCEK, ECDSA P-384.
type Authority struct {
	creds *credentials
	pem   []byte
}

type credentials struct {
	ark, ask, vcek *x509.Certificate
	vcekKey        *ecdsa.PrivateKey
}

// NewAuthority loads the authority kept in dir, creating it (and dir) on
// first use. The file is written 0600: it holds the key every simulated
// report is signed with.
func NewAuthority(dir string) (*Authority, error) {
	path := filepath.Join(dir, credentialsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if data, err = create(dir, path); err != nil {
			return nil, fmt.Errorf("create sim authority: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("load sim authority: %w", err)
	}
	creds, err := parseCredentials(data)
	if err != nil {
		return nil, fmt.Errorf("load sim authority %s: %w", path, err)
	}
	return &Authority{creds: creds, pem: data}, nil
}

// Root returns the fingerprint a verifier must list in Options.AllowSim to
// accept this authority's reports.
func (a *Authority) Root() RootFingerprint { return fingerprint(a.creds.ark) }

// GuestCredentials returns what a guest needs to produce reports: the VCEK
// private key and the certificate chain, PEM. Whoever holds it can forge
// reports; it is meant for the simulated guest only.
func (a *Authority) GuestCredentials() []byte { return bytes.Clone(a.pem) }

// Attester returns an attester signing with this authority, as a guest
// would get from NewAttester(a.GuestCredentials(), cfg).
func (a *Authority) Attester(cfg Config) *Attester {
	return &Attester{creds: a.creds, cfg: cfg}
}

func create(dir, path string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	now := time.Now()
	arkKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	askKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	vcekKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ark, err := issue("ARK", true, now.AddDate(25, 0, 0), arkKey.Public(), nil, arkKey)
	if err != nil {
		return nil, err
	}
	ask, err := issue("ASK", true, now.AddDate(25, 0, 0), askKey.Public(), ark, arkKey)
	if err != nil {
		return nil, err
	}
	vcek, err := issue("VCEK", false, now.AddDate(7, 0, 0), vcekKey.Public(), ask, askKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(vcekKey)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for _, c := range []*x509.Certificate{vcek, ask, ark} {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	_ = pem.Encode(&buf, &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})

	// Written under a temporary name and renamed, so a crash never leaves a
	// half-written authority that a later start would refuse.
	tmp, err := os.CreateTemp(dir, credentialsFile+".*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// issue makes a certificate for pub, signed by signerKey as parent (self-signed
// when parent is nil).
func issue(role string, ca bool, notAfter time.Time, pub any, parent *x509.Certificate, signerKey *ecdsa.PrivateKey) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         "SIMULATED " + role + " (no security)",
			Organization:       []string{"scc simulated TEE"},
			OrganizationalUnit: []string{"not AMD"},
		},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		IsCA:                  ca,
		SignatureAlgorithm:    x509.ECDSAWithSHA384,
	}
	if ca {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signerKey)
	if err != nil {
		return nil, fmt.Errorf("issue sim %s: %w", role, err)
	}
	return x509.ParseCertificate(der)
}

// parseCredentials reads the PEM written by create: VCEK, ASK, ARK
// certificates in that order and the VCEK private key.
func parseCredentials(data []byte) (*credentials, error) {
	var certs []*x509.Certificate
	var key *ecdsa.PrivateKey
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, err
			}
			certs = append(certs, c)
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			key = k
		default:
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
	}
	if len(certs) != 3 || key == nil {
		return nil, errors.New("want VCEK, ASK and ARK certificates and the VCEK key")
	}
	c := &credentials{vcek: certs[0], ask: certs[1], ark: certs[2], vcekKey: key}
	if !key.PublicKey.Equal(c.vcek.PublicKey) {
		return nil, errors.New("VCEK key does not match its certificate")
	}
	if key.Curve != elliptic.P384() {
		return nil, errors.New("VCEK key is not P-384")
	}
	return c, nil
}
