package attest

import (
	"crypto"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
)

// Image is what a guest states about a container image it pulled: which
// manifest it runs and what it checked. Every blob of the image was
// checked against the manifest's digests; Pinned says whether the
// manifest itself was named by digest.
type Image struct {
	// Manifest is the digest of the image manifest the guest pulled and
	// runs (sha256:...).
	Manifest string `json:"manifest"`
	// Index is the digest of the image index the manifest was chosen
	// from, when the image was pulled through one.
	Index string `json:"index,omitempty"`
	// Config is the digest of the image's config.
	Config string `json:"config"`
	// Reference is the reference the guest pulled, as the host named it
	// (informative: the digests say what the image is).
	Reference string `json:"reference,omitempty"`
	// Pinned says the guest pulled the image by digest (the host's pin
	// or io.scc.image.digest), not by whatever a tag named.
	Pinned bool `json:"pinned"`
}

// Digests are the image's digests a policy can name: the manifest's and,
// for an image pulled through an index, the index's.
func (i Image) Digests() []string {
	if i.Index == "" {
		return []string{i.Manifest}
	}
	return []string{i.Manifest, i.Index}
}

// ErrInvalidClaims means runtime claims that do not decode or hold a
// malformed value.
var ErrInvalidClaims = errors.New("invalid runtime claims")

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ValidDigest reports whether d is a sha256 digest as claims and policies
// write them: "sha256:" and 64 lower-case hex digits.
func ValidDigest(d string) bool { return digestRE.MatchString(d) }

// Validate checks the image's digests and its reference's length.
func (i Image) Validate() error {
	for _, d := range []struct{ name, v string }{{"manifest", i.Manifest}, {"config", i.Config}} {
		if !ValidDigest(d.v) {
			return fmt.Errorf("%w: image %s digest %q", ErrInvalidClaims, d.name, d.v)
		}
	}
	if i.Index != "" && !ValidDigest(i.Index) {
		return fmt.Errorf("%w: image index digest %q", ErrInvalidClaims, i.Index)
	}
	if len(i.Reference) > 4096 {
		return fmt.Errorf("%w: image reference of %d bytes", ErrInvalidClaims, len(i.Reference))
	}
	return nil
}

// MarshalEvent is the image's canonical encoding: the data of a vTPM
// image event (vtpm.EventImage) and an entry of RuntimeClaims.
func (i Image) MarshalEvent() ([]byte, error) {
	if err := i.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(i)
}

// ParseImage decodes MarshalEvent's encoding, refusing unknown members.
func ParseImage(b []byte) (Image, error) {
	var i Image
	if err := decodeStrict(b, &i); err != nil {
		return Image{}, fmt.Errorf("%w: image: %v", ErrInvalidClaims, err)
	}
	return i, i.Validate()
}

// RuntimeClaims are what a guest states about itself in a key broker
// session, beyond its TEE's evidence: the images it pulled so far, in
// order. They travel in the attestation request ("runtime-claims") and
// are bound to the evidence by ReportDataWithClaims, so a broker that
// checked the evidence knows the guest made them in this session.
type RuntimeClaims struct {
	Images []Image `json:"images,omitempty"`
}

// maxImages bounds the images a guest may claim.
const maxImages = 256

// Marshal is the claims' canonical encoding, which ReportDataWithClaims
// hashes.
func (c RuntimeClaims) Marshal() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(c)
}

// Validate checks every image.
func (c RuntimeClaims) Validate() error {
	if len(c.Images) > maxImages {
		return fmt.Errorf("%w: %d images, at most %d", ErrInvalidClaims, len(c.Images), maxImages)
	}
	for _, i := range c.Images {
		if err := i.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// ParseRuntimeClaims decodes claims a guest sent, refusing unknown
// members.
func ParseRuntimeClaims(b []byte) (RuntimeClaims, error) {
	var c RuntimeClaims
	if err := decodeStrict(b, &c); err != nil {
		return RuntimeClaims{}, fmt.Errorf("%w: %v", ErrInvalidClaims, err)
	}
	return c, c.Validate()
}

// reportDataClaimsDomain versions the encoding with claims.
const reportDataClaimsDomain = "scc-kbs-report-data-v2"

// ReportDataWithClaims is ReportData with the guest's runtime claims
// bound too. Without claims (none, or no image) it is ReportData, so that
// guests and brokers that know nothing of claims agree with it. With
// them it is SHA-512 over
//
//	"scc-kbs-report-data-v2" || u32be(len(nonce)) || nonce || u32be(len(spki)) || spki || u32be(len(c)) || c
//
// where c is claims.Marshal(): the broker recomputes it from the claims
// it decoded, so how the request spelt them does not matter.
func ReportDataWithClaims(nonce string, pubKey crypto.PublicKey, claims *RuntimeClaims) ([ReportDataSize]byte, error) {
	if claims == nil || len(claims.Images) == 0 {
		return ReportData(nonce, pubKey)
	}
	var out [ReportDataSize]byte
	c, err := claims.Marshal()
	if err != nil {
		return out, fmt.Errorf("report data: %w", err)
	}
	spki, err := marshalKey(pubKey)
	if err != nil {
		return out, err
	}
	h := sha512.New()
	h.Write([]byte(reportDataClaimsDomain))
	writeField(h, []byte(nonce))
	writeField(h, spki)
	writeField(h, c)
	copy(out[:], h.Sum(nil))
	return out, nil
}
