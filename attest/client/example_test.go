package client_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"

	"github.com/sccontainers/scc/attest/client"
	"github.com/sccontainers/scc/attest/kbs"
	"github.com/sccontainers/scc/attest/sim"
)

// A guest fetches an image layer key from a broker that accepts the
// simulated TEE, pinning the broker's self-signed certificate.
func ExampleClient_GetResource() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "kbs-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// Host side: a simulated TEE authority, and the broker with a policy
	// that names its root explicitly.
	authority, err := sim.NewAuthority(filepath.Join(dir, "sim"))
	if err != nil {
		log.Fatal(err)
	}
	measurement := [48]byte{0xde, 0xad, 0xbe, 0xef}
	srv, err := kbs.New(ctx, kbs.Config{DataDir: filepath.Join(dir, "kbs")})
	if err != nil {
		log.Fatal(err)
	}
	err = srv.SetPolicy(ctx, kbs.Policy{Attestation: map[string]kbs.TEEPolicy{
		sim.TEE: {
			Allow:        true,
			Roots:        []sim.RootFingerprint{authority.Root()},
			Measurements: []string{hex.EncodeToString(measurement[:])},
		},
	}})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.SetResource(ctx, "default/image-key/layer1", []byte("layer-1 key")); err != nil {
		log.Fatal(err)
	}
	_, fingerprint, err := kbs.LoadOrCreateCert(filepath.Join(dir, "kbs"))
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ctx, ln, false)

	// Guest side.
	guest, err := sim.NewAttester(authority.GuestCredentials(), sim.Config{Measurement: measurement})
	if err != nil {
		log.Fatal(err)
	}
	c := &client.Client{URL: "https://" + ln.Addr().String(), CertFingerprint: fingerprint}
	secret, err := c.GetResource(ctx, "default/image-key/layer1", guest)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", secret)
	// Output: layer-1 key
}
