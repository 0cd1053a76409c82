package attest

import (
	"bytes"
	"crypto"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// ReportDataSize is the size of the REPORT_DATA field of an SNP report
// (and of a TDX quote's REPORTDATA): the guest-chosen bytes the hardware
// signs along with the measurement.
const ReportDataSize = 64

// reportDataDomain separates this hash from any other SHA-512 the guest or
// the broker computes, and versions the encoding.
const reportDataDomain = "scc-kbs-report-data-v1"

// ErrUnsupportedKey is returned for a public key that has no SubjectPublicKeyInfo
// encoding (x509.MarshalPKIXPublicKey rejects it).
var ErrUnsupportedKey = errors.New("unsupported public key type")

// ReportData binds an attestation report to one key broker session: the
// nonce of the session's challenge and the guest's ephemeral public key, to
// which the broker encrypts the secrets it releases. The guest puts the
// result in REPORT_DATA; the broker recomputes it from the nonce it issued
// and the tee-pubkey of the request, so a report can neither be replayed in
// another session nor paired with a key the guest does not hold.
//
// The value is SHA-512 over
//
//	"scc-kbs-report-data-v1" || u32be(len(nonce)) || nonce || u32be(len(spki)) || spki
//
// where spki is the DER SubjectPublicKeyInfo of pubKey. Length prefixes
// make the encoding unambiguous; SPKI DER makes it independent of how the
// key was written as a JWK (member order, padding).
func ReportData(nonce string, pubKey crypto.PublicKey) ([ReportDataSize]byte, error) {
	var out [ReportDataSize]byte
	spki, err := marshalKey(pubKey)
	if err != nil {
		return out, err
	}
	h := sha512.New()
	h.Write([]byte(reportDataDomain))
	writeField(h, []byte(nonce))
	writeField(h, spki)
	copy(out[:], h.Sum(nil))
	return out, nil
}

func writeField(h interface{ Write([]byte) (int, error) }, b []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// marshalKey is the DER SubjectPublicKeyInfo of pubKey.
func marshalKey(pubKey crypto.PublicKey) ([]byte, error) {
	if pubKey == nil {
		return nil, fmt.Errorf("report data: %w: nil key", ErrUnsupportedKey)
	}
	spki, err := x509.MarshalPKIXPublicKey(pubKey)
	if err != nil {
		return nil, fmt.Errorf("report data: %w: %v", ErrUnsupportedKey, err)
	}
	return spki, nil
}

// decodeStrict decodes one JSON value into v, refusing unknown members
// and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}
