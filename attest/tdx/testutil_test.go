package tdx

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/url"
	"testing"
	"time"

	tdxtesting "github.com/google/go-tdx-guest/testing"
	"github.com/google/go-tdx-guest/testing/testdata"
)

// sampleNow is a time at which the sample quote's PCK chain and the
// sample collateral are all valid.
var sampleNow = time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)

// sampleQuote returns a copy of go-tdx-guest's sample production quote.
func sampleQuote() []byte { return bytes.Clone(testdata.RawQuote) }

func unescapeChain(t *testing.T, hdr map[string][]string, name string) []byte {
	t.Helper()
	s, err := url.QueryUnescape(hdr[name][0])
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}

// intelCollateral is Intel PCS's sample collateral for the sample quote's
// platform. Its TCB levels postdate the quote's TEE_TCB_SVN, so the quote
// does not reach an acceptable TCB level with it.
func intelCollateral(t *testing.T) *Collateral {
	t.Helper()
	return &Collateral{
		TCBInfo:               bytes.Clone(testdata.TcbInfoBody),
		TCBInfoIssuerChain:    unescapeChain(t, tdxtesting.TcbInfoHeader, hdrTCBInfoChain),
		QEIdentity:            bytes.Clone(testdata.QeIdentityBody),
		QEIdentityIssuerChain: unescapeChain(t, tdxtesting.QeIdentityHeader, hdrQEIdentityChain),
		PCKCRL:                bytes.Clone(testdata.PckCrlBody),
		PCKCRLIssuerChain:     unescapeChain(t, tdxtesting.PckCrlHeader, hdrPCKCRLChain),
		RootCACRL:             bytes.Clone(testdata.RootCrlBody),
	}
}

// testPCS is a stand-in for Intel's TCB signing service: a test root and
// signing certificate with the subject names the verifier requires.
// Trusting its root alongside Intel's lets a test issue TCB info for the
// sample platform at the level the sample quote has.
type testPCS struct {
	root      *x509.Certificate
	signer    *ecdsa.PrivateKey
	chainPEM  []byte
	rootsPool *x509.CertPool // Intel's root and the test root
}

func newTestPCS(t *testing.T) *testPCS {
	t.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notBefore, notAfter := sampleNow.AddDate(-1, 0, 0), sampleNow.AddDate(1, 0, 0)
	rootTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Intel SGX Root CA", Organization: []string{"scc test"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	signTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "Intel SGX TCB Signing", Organization: []string{"scc test"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	signDER, err := x509.CreateCertificate(rand.Reader, signTmpl, root, &signKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	var chain bytes.Buffer
	pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: signDER})
	pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: rootDER})
	pool := IntelRoots()
	pool.AddCert(root)
	return &testPCS{root: root, signer: signKey, chainPEM: chain.Bytes(), rootsPool: pool}
}

// sign wraps body (a tcbInfo or enclaveIdentity object) in a PCS response
// signed the way PCS signs: raw r||s over the object's bytes.
func (p *testPCS) sign(t *testing.T, field string, body []byte) []byte {
	t.Helper()
	digest := sha256.Sum256(body)
	r, s, err := ecdsa.Sign(rand.Reader, p.signer, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	out, err := json.Marshal(map[string]any{field: json.RawMessage(body), "signature": hex.EncodeToString(sig)})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// collateral returns collateral under which the sample quote's platform
// is up to date: Intel's sample TCB info with the first level's SVNs
// lowered to the sample platform's (its PCK certificate's CPU SVNs and
// the quote's TEE_TCB_SVN), signed by the test PCS.
func (p *testPCS) collateral(t *testing.T) *Collateral {
	t.Helper()
	var resp map[string]json.RawMessage
	if err := json.Unmarshal(testdata.TcbInfoBody, &resp); err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	if err := json.Unmarshal(resp["tcbInfo"], &info); err != nil {
		t.Fatal(err)
	}
	levels := info["tcbLevels"].([]any)
	tcb := levels[0].(map[string]any)["tcb"].(map[string]any)
	comps := tcb["tdxtcbcomponents"].([]any)
	comps[2].(map[string]any)["svn"] = 4    // the sample quote's TEE_TCB_SVN[2]
	cpuSVN := []int{3, 3, 2, 2, 2, 1, 0, 2} // the sample PCK certificate's, then zeros
	for i, v := range cpuSVN {
		tcb["sgxtcbcomponents"].([]any)[i].(map[string]any)["svn"] = v
	}
	body, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	c := intelCollateral(t)
	c.TCBInfo = p.sign(t, "tcbInfo", body)
	c.TCBInfoIssuerChain = p.chainPEM
	c.PCKCRL, c.PCKCRLIssuerChain, c.RootCACRL = nil, nil, nil
	return c
}
