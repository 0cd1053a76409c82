package kbs

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

const (
	tlsCertFile = "tls.crt"
	tlsKeyFile  = "tls.key"
)

// CertFingerprint is the pin a guest checks: the SHA-256 of the server
// certificate (DER), lower-case hex.
func CertFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// LoadOrCreateCert returns the broker's self-signed TLS certificate from
// dataDir, creating it on first use, and its fingerprint. The certificate
// persists so that the pin given to guests stays valid across restarts.
// hosts (IP addresses or names) are added as subject alternative names
// when the certificate is created, besides localhost and the loopback
// addresses; guests pin the fingerprint, so names are a convenience.
func LoadOrCreateCert(dataDir string, hosts ...string) (tls.Certificate, string, error) {
	key, err := loadOrCreateECKey(filepath.Join(dataDir, tlsKeyFile))
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("tls key: %w", err)
	}
	certPath := filepath.Join(dataDir, tlsCertFile)
	data, err := os.ReadFile(certPath)
	var der []byte
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if der, err = selfSign(key, hosts); err != nil {
			return tls.Certificate{}, "", fmt.Errorf("create tls certificate: %w", err)
		}
		if err := writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			return tls.Certificate{}, "", fmt.Errorf("write tls certificate: %w", err)
		}
	case err != nil:
		return tls.Certificate{}, "", fmt.Errorf("read tls certificate: %w", err)
	default:
		block, _ := pem.Decode(data)
		if block == nil || block.Type != "CERTIFICATE" {
			return tls.Certificate{}, "", fmt.Errorf("%s: no CERTIFICATE PEM block", certPath)
		}
		der = block.Bytes
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("%s: %w", certPath, err)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return tls.Certificate{}, "", fmt.Errorf("%s does not match %s", certPath, tlsKeyFile)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, CertFingerprint(der), nil
}

func selfSign(key *ecdsa.PrivateKey, hosts []string) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "scc-kbs", Organization: []string{"scc"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsLoopback() && !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if h != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
}
