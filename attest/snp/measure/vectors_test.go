package measure

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// vector is one entry of testdata/vectors.json (see testdata/README.md).
type vector struct {
	Name             string  `json:"name"`
	Mode             string  `json:"mode"`
	VCPUs            int     `json:"vcpus"`
	VCPUType         *string `json:"vcpu_type"`
	VCPUFamily       *int    `json:"vcpu_family"`
	VCPUModel        *int    `json:"vcpu_model"`
	VCPUStepping     *int    `json:"vcpu_stepping"`
	VCPUSig          *string `json:"vcpu_sig"`
	VMMType          string  `json:"vmm_type"`
	OVMF             string  `json:"ovmf"`
	Kernel           *string `json:"kernel"`
	Initrd           *string `json:"initrd"`
	Append           *string `json:"append"`
	GuestFeatures    string  `json:"guest_features"`
	SNPOVMFHash      *string `json:"snp_ovmf_hash"`
	ExpectedOVMFHash *string `json:"expected_ovmf_hash"`
	SVSM             *string `json:"svsm"`
	OVMFVarsSize     *uint64 `json:"ovmf_vars_size"`
	ExpectedDigest   *string `json:"expected_digest"`
	ExpectedError    *string `json:"expected_error"`
	DigestBytes      int     `json:"digest_bytes"`
}

// upstreamErrors maps the reference implementation's error texts to the
// error kind this package must return. A new expected error in the vectors
// fails the test until it is classified here.
var upstreamErrors = map[string]error{
	"Kernel specified but OVMF metadata doesn't include SNP_KERNEL_HASHES section": ErrKernelHashesUnsupported,
	"Kernel specified but OVMF doesn't support kernel/initrd/cmdline measurement":  ErrKernelHashesUnsupported,
}

const fixtures = "testdata/fixtures"

func loadVectors(t testing.TB) []vector {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatalf("parse vectors.json: %v", err)
	}
	return vs
}

func parseHexUint(t testing.TB, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		t.Fatalf("bad hex number %q: %v", s, err)
	}
	return v
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// blob maps a vector's file argument onto DirectBoot fields: "/dev/null"
// is present but empty, anything else a fixture file.
func blob(name string) (data []byte, path string) {
	if name == "/dev/null" {
		return []byte{}, ""
	}
	return nil, filepath.Join(fixtures, name)
}

// options translates a vector into Options. The vCPU is given by name when
// the vector has one.
func (v vector) options(t testing.TB) Options {
	t.Helper()
	mode, err := ParseMode(v.Mode)
	if err != nil {
		t.Fatal(err)
	}
	vmm, err := ParseVMMType(v.VMMType)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Mode:          mode,
		VCPUs:         v.VCPUs,
		VMMType:       vmm,
		OVMFPath:      filepath.Join(fixtures, v.OVMF),
		GuestFeatures: parseHexUint(t, v.GuestFeatures),
	}
	if v.VCPUType != nil {
		o.VCPUType = *v.VCPUType
	} else if v.VCPUSig != nil {
		o.VCPUSig = uint32(parseHexUint(t, *v.VCPUSig))
	}
	// The reference builds a hashes table only when a kernel is given;
	// initrd and command line without one are ignored.
	if v.Kernel != nil {
		db := &DirectBoot{}
		db.Kernel, db.KernelPath = blob(*v.Kernel)
		if v.Initrd != nil {
			db.Initrd, db.InitrdPath = blob(*v.Initrd)
		}
		if v.Append != nil {
			db.Cmdline = *v.Append
		}
		o.DirectBoot = db
	}
	if v.SNPOVMFHash != nil {
		o.SNPOVMFHash = mustHex(t, *v.SNPOVMFHash)
	}
	if v.SVSM != nil {
		o.SVSMPath = filepath.Join(fixtures, *v.SVSM)
	}
	if v.OVMFVarsSize != nil {
		o.OVMFVarsSize = *v.OVMFVarsSize
	}
	return o
}

func TestVectors(t *testing.T) {
	vs := loadVectors(t)
	if len(vs) != 26 {
		t.Errorf("vectors.json has %d cases, want 26", len(vs))
	}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			opts := v.options(t)
			variants := map[string]Options{"as-given": opts}
			// The same launch must measure the same whether the vCPU is
			// named or given by its signature.
			if v.VCPUType != nil && v.VCPUSig != nil {
				bySig := opts
				bySig.VCPUType = ""
				bySig.VCPUSig = uint32(parseHexUint(t, *v.VCPUSig))
				variants["by-signature"] = bySig
			}
			for name, o := range variants {
				got, err := LaunchDigest(o)
				switch {
				case v.ExpectedError != nil:
					kind, known := upstreamErrors[*v.ExpectedError]
					if !known {
						t.Fatalf("%s: expected error %q is not classified in upstreamErrors", name, *v.ExpectedError)
					}
					if !errors.Is(err, kind) {
						t.Errorf("%s: LaunchDigest() = %x, %v; want error %v (upstream: %q)", name, got, err, kind, *v.ExpectedError)
					}
				case v.ExpectedDigest != nil:
					if err != nil {
						t.Fatalf("%s: LaunchDigest() error: %v", name, err)
					}
					if len(got) != v.DigestBytes {
						t.Errorf("%s: digest is %d bytes, want %d", name, len(got), v.DigestBytes)
					}
					if h := hex.EncodeToString(got); h != *v.ExpectedDigest {
						t.Errorf("%s: digest\n got %s\nwant %s", name, h, *v.ExpectedDigest)
					}
				default:
					t.Fatal("vector has neither expected_digest nor expected_error")
				}
			}

			if v.ExpectedOVMFHash != nil {
				data, err := os.ReadFile(opts.OVMFPath)
				if err != nil {
					t.Fatal(err)
				}
				fw, err := ParseOVMF(data)
				if err != nil {
					t.Fatal(err)
				}
				got, err := SNPOVMFHash(fw)
				if err != nil {
					t.Fatal(err)
				}
				if want := mustHex(t, *v.ExpectedOVMFHash); !bytes.Equal(got, want) {
					t.Errorf("SNPOVMFHash() = %x, want %x", got, want)
				}
			}

			if v.VCPUFamily != nil && v.VCPUModel != nil && v.VCPUStepping != nil && v.VCPUSig != nil {
				got := CPUSig(*v.VCPUFamily, *v.VCPUModel, *v.VCPUStepping)
				if want := uint32(parseHexUint(t, *v.VCPUSig)); got != want {
					t.Errorf("CPUSig(%d, %d, %d) = %#x, want %#x", *v.VCPUFamily, *v.VCPUModel, *v.VCPUStepping, got, want)
				}
			}
		})
	}
}

// TestSNPOVMFHashSeed checks that starting the chain from a precomputed
// firmware hash gives the same digest as hashing the firmware, for every
// SNP vector that hashes it.
func TestSNPOVMFHashSeed(t *testing.T) {
	for _, v := range loadVectors(t) {
		if v.Mode != "snp" || v.SNPOVMFHash != nil || v.ExpectedDigest == nil {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			opts := v.options(t)
			data, err := os.ReadFile(opts.OVMFPath)
			if err != nil {
				t.Fatal(err)
			}
			fw, err := ParseOVMF(data)
			if err != nil {
				t.Fatal(err)
			}
			if opts.SNPOVMFHash, err = SNPOVMFHash(fw); err != nil {
				t.Fatal(err)
			}
			got, err := LaunchDigest(opts)
			if err != nil {
				t.Fatal(err)
			}
			if h := hex.EncodeToString(got); h != *v.ExpectedDigest {
				t.Errorf("digest from seed\n got %s\nwant %s", h, *v.ExpectedDigest)
			}
		})
	}
}

// TestSNPOVMFHashTail checks that with a precomputed firmware hash only
// the image's tail (footer table and metadata) is needed, so a verifier
// can store the hash instead of a multi-megabyte firmware.
func TestSNPOVMFHashTail(t *testing.T) {
	data := readFixture(t, "svsm_ovmf.fd")
	fw, err := ParseOVMF(data)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := SNPOVMFHash(fw)
	if err != nil {
		t.Fatal(err)
	}
	full := Options{Mode: ModeSNP, VCPUs: 2, VCPUType: "EPYC-Milan", OVMF: data, GuestFeatures: 1}
	want, err := LaunchDigest(full)
	if err != nil {
		t.Fatal(err)
	}
	tail := full
	tail.OVMF, tail.SNPOVMFHash = data[len(data)-pageSize:], seed
	got, err := LaunchDigest(tail)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("digest from hash and tail %x, from full image %x", got, want)
	}
}

func TestCPUSignatures(t *testing.T) {
	b, err := os.ReadFile("testdata/cpu_sig.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SignatureVectors []struct {
			Source      string `json:"source"`
			Family      int    `json:"family"`
			Model       int    `json:"model"`
			Stepping    int    `json:"stepping"`
			ExpectedSig string `json:"expected_sig"`
		} `json:"signature_vectors"`
		CPUTypes map[string][3]int `json:"cpu_types"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, sv := range doc.SignatureVectors {
		got := CPUSig(sv.Family, sv.Model, sv.Stepping)
		if want := uint32(parseHexUint(t, sv.ExpectedSig)); got != want {
			t.Errorf("%s: CPUSig(%d, %d, %d) = %#x, want %#x", sv.Source, sv.Family, sv.Model, sv.Stepping, got, want)
		}
	}
	for name, fms := range doc.CPUTypes {
		got, err := VCPUSignature(name)
		if err != nil {
			t.Errorf("VCPUSignature(%q): %v", name, err)
			continue
		}
		if want := CPUSig(fms[0], fms[1], fms[2]); got != want {
			t.Errorf("VCPUSignature(%q) = %#x, want %#x", name, got, want)
		}
	}
	if got, want := len(VCPUTypes()), len(doc.CPUTypes); got != want {
		t.Errorf("VCPUTypes() has %d names, cpu_sig.json %d: %v", got, want, VCPUTypes())
	}
	if sig := CPUSig(25, 1, 1); sig != 0xa00f11 {
		t.Errorf("EPYC-Milan signature = %#x, want 0xa00f11", sig)
	}
}
