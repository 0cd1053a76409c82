package kbs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/kbs"
	"github.com/sccontainers/scc/attest/sim"
)

func testImage(c string) attest.Image {
	return attest.Image{
		Manifest:  "sha256:" + strings.Repeat(c, 64),
		Config:    "sha256:" + strings.Repeat("c", 64),
		Reference: "registry.example/" + c + ":v1",
		Pinned:    true,
	}
}

// TestImagePolicy: a guest states the images it pulled in its runtime
// claims, bound to its evidence; the policy's images, per TEE and per
// resource, decide whether it gets keys.
func TestImagePolicy(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	a, b, other := testImage("a"), testImage("b"), testImage("e")
	p := h.simPolicy()
	tp := p[sim.TEE]
	tp.Images = []string{a.Manifest, b.Manifest}
	p[sim.TEE] = tp
	doc := kbs.Policy{Attestation: p, Resources: map[string]kbs.ResourceRule{
		"default/b-key/*": {Images: []string{b.Manifest}},
	}}
	if err := h.srv.SetPolicy(ctx, doc); err != nil {
		t.Fatal(err)
	}
	secret := []byte("layer key of a")
	h.setResource(t, "default/a-key/layer", secret)
	h.setResource(t, "default/b-key/layer", []byte("layer key of b"))
	guest := h.guest(sim.Config{})
	withImages := func(imgs ...attest.Image) *attest.RuntimeClaims {
		return &attest.RuntimeClaims{Images: imgs}
	}

	t.Run("listed image gets its key", func(t *testing.T) {
		c := h.client()
		c.Claims = withImages(a)
		got, err := c.GetResource(ctx, "default/a-key/layer", guest)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("GetResource = %q, %v", got, err)
		}
	})
	t.Run("image the policy does not list", func(t *testing.T) {
		c := h.client()
		c.Claims = withImages(a, other)
		_, err := c.GetResource(ctx, "default/a-key/layer", guest)
		se := wantServerError(t, err, http.StatusForbidden, "PolicyDeny")
		if !strings.Contains(se.Detail, "image not allowed by policy: the guest runs image "+other.Manifest+" (registry.example/e:v1), which the sim policy does not list") {
			t.Fatalf("refusal %+v does not name the image", se)
		}
	})
	t.Run("no image reported", func(t *testing.T) {
		_, err := h.client().GetResource(ctx, "default/a-key/layer", guest)
		se := wantServerError(t, err, http.StatusForbidden, "PolicyDeny")
		if !strings.Contains(se.Detail, "the sim policy lists images, and the guest reported none") {
			t.Fatalf("refusal %+v", se)
		}
	})
	t.Run("resource rule", func(t *testing.T) {
		c := h.client()
		c.Claims = withImages(a)
		_, err := c.GetResource(ctx, "default/b-key/layer", guest)
		se := wantServerError(t, err, http.StatusForbidden, "PolicyDeny")
		if !strings.Contains(se.Detail, `rule "default/b-key/*" does not list`) {
			t.Fatalf("refusal %+v", se)
		}
		c.Claims = withImages(b)
		if _, err := c.GetResource(ctx, "default/b-key/layer", guest); err != nil {
			t.Fatalf("image b: %v", err)
		}
	})
	t.Run("claims not the ones the evidence binds", func(t *testing.T) {
		// Evidence made for image a, sent with claims of image e.
		s := h.rawAuth(t, sim.TEE)
		rd, err := attest.ReportDataWithClaims(s.nonce, s.key.Public(), withImages(a))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := guest.Evidence(ctx, rd)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(map[string]any{
			"tee-pubkey":     jose.JSONWebKey{Key: s.key.Public(), Algorithm: string(jose.ECDH_ES_A256KW)},
			"tee-evidence":   json.RawMessage(ev),
			"runtime-claims": withImages(other),
		})
		resp, data := s.attest(t, body)
		wantProblem(t, resp, data, http.StatusUnauthorized, "AttestationFailed", sim.TEE)
		// And the claims it was made for pass.
		s = h.rawAuth(t, sim.TEE)
		rd, _ = attest.ReportDataWithClaims(s.nonce, s.key.Public(), withImages(a))
		ev, _ = guest.Evidence(ctx, rd)
		body, _ = json.Marshal(map[string]any{
			"tee-pubkey":     jose.JSONWebKey{Key: s.key.Public(), Algorithm: string(jose.ECDH_ES_A256KW)},
			"tee-evidence":   json.RawMessage(ev),
			"runtime-claims": withImages(a),
		})
		if resp, data := s.attest(t, body); resp.StatusCode != http.StatusOK {
			t.Fatalf("attest with the bound claims: %d %s", resp.StatusCode, data)
		}
	})
	t.Run("malformed claims", func(t *testing.T) {
		s := h.rawAuth(t, sim.TEE)
		body, _ := json.Marshal(map[string]any{
			"tee-pubkey":     jose.JSONWebKey{Key: s.key.Public(), Algorithm: string(jose.ECDH_ES_A256KW)},
			"tee-evidence":   json.RawMessage(`{"tee":"sim"}`),
			"runtime-claims": map[string]any{"images": []any{map[string]any{"manifest": "sha256:zz"}}},
		})
		resp, data := s.attest(t, body)
		wantProblem(t, resp, data, http.StatusBadRequest, "InvalidRequest", sim.TEE)
	})
}
