package guestpull

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"path/filepath"

	"github.com/sccontainers/scc/attest/kbs"
	"github.com/sccontainers/scc/attest/sim"
)

// JWEKeyResource is where the broker keeps the private key of layers
// encrypted to the Broker's JWE public key.
const JWEKeyResource = "default/image-key/jwe"

// Broker is scc-kbs serving HTTPS on 127.0.0.1 in this process, with a
// simulated TEE authority whose guests it accepts when they report
// Measurement.
type Broker struct {
	Server *kbs.Server
	Addr   string
	// CertSHA256 pins its certificate.
	CertSHA256 string
	// SimDir holds the simulated TEE's authority.
	SimDir      string
	Measurement [48]byte
	// JWEPublicKey is the PEM public key whose private half the broker
	// holds at JWEKeyResource.
	JWEPublicKey []byte

	root sim.RootFingerprint
}

// StartBroker starts the broker with its data and the simulated authority
// in dir, serving until ctx ends.
func StartBroker(ctx context.Context, dir string) (*Broker, error) {
	b := &Broker{SimDir: filepath.Join(dir, "sim")}
	authority, err := sim.NewAuthority(b.SimDir)
	if err != nil {
		return nil, err
	}
	copy(b.Measurement[:], "scc guest-pull guest measurement")
	data := filepath.Join(dir, "kbs")
	if b.Server, err = kbs.New(ctx, kbs.Config{DataDir: data}); err != nil {
		return nil, err
	}
	b.root = authority.Root()
	if err := b.SetImages(ctx, nil); err != nil {
		return nil, err
	}
	if _, b.CertSHA256, err = kbs.LoadOrCreateCert(data); err != nil {
		return nil, err
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	b.JWEPublicKey = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	if err := b.Server.SetResource(ctx, JWEKeyResource, priv); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.Addr = ln.Addr().String()
	go b.Server.Serve(ctx, ln, false)
	return b, nil
}

// SetImages sets the broker's policy: the simulated TEE is accepted only
// because the policy names its root and measurement; images, if any, are
// the only container images its guests may run to get keys.
func (b *Broker) SetImages(ctx context.Context, images []string) error {
	return b.Server.SetPolicy(ctx, kbs.Policy{Attestation: map[string]kbs.TEEPolicy{sim.TEE: {
		Allow:        true,
		Roots:        []sim.RootFingerprint{b.root},
		Measurements: []string{hex.EncodeToString(b.Measurement[:])},
		Images:       images,
	}}})
}

// ShimConfig is the [confidential] section of a shim configuration that
// pulls from registry and gets keys from the broker, its guests reporting
// measurement; enabled makes every container confidential. The guests
// also need SimKernelParam.
func (b *Broker) ShimConfig(registry string, measurement [48]byte, enabled bool) string {
	return fmt.Sprintf(`[confidential]
enabled = %t
registry = %q
registry_plain_http = true
kbs = %q
kbs_cert_sha256 = %q
jwe_keys = [%q]
sim_authority = %q
sim_measurement = %q
`, enabled, registry, b.Addr, b.CertSHA256, JWEKeyResource, b.SimDir, hex.EncodeToString(measurement[:]))
}

// SimKernelParam makes the guest attest with the simulated TEE.
const SimKernelParam = "scc.tee=sim"
