package measure

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"hash"
)

const pageSize = 4096

// snpDigestSize is the size of an SNP launch digest (SHA-384).
const snpDigestSize = sha512.Size384

// Page types of SNP_LAUNCH_UPDATE (SEV-SNP ABI specification, "PAGE_TYPE
// field"). They are part of every PAGE_INFO, so measuring a page with the
// wrong type yields a different digest.
const (
	pageTypeNormal     = 0x1
	pageTypeVMSA       = 0x2
	pageTypeZero       = 0x3
	pageTypeUnmeasured = 0x4
	pageTypeSecrets    = 0x5
	pageTypeCPUID      = 0x6
)

// vmsaGPA is the GPA the secure processor records for a VMSA page: the
// RMP stores -1, page aligned and truncated to the 48-bit (Milan) GPA width
// the measurement uses.
const vmsaGPA = 0xFFFFFFFFF000

// pageInfoSize is the length of the PAGE_INFO structure (SEV-SNP ABI
// specification, "Layout of the PAGE_INFO Structure"):
//
//	0x00 DIGEST_CUR  [48]byte  digest so far
//	0x30 CONTENTS    [48]byte  SHA-384 of the page, or zeros
//	0x60 LENGTH      uint16    = 0x70
//	0x62 PAGE_TYPE   uint8
//	0x63 IMI_PAGE    uint8     bit 0; always 0 here (not a migration image)
//	0x64 VMPL3_PERMS uint8     0: the VMM grants no lower-VMPL permissions
//	0x65 VMPL2_PERMS uint8
//	0x66 VMPL1_PERMS uint8
//	0x67 reserved
//	0x68 GPA         uint64
const pageInfoSize = 0x70

// gctx models the guest context's launch digest: every SNP_LAUNCH_UPDATE
// replaces it with SHA-384 over a PAGE_INFO that chains in the old value.
// The zero value starts from an all-zero digest, as the firmware does at
// SNP_LAUNCH_START.
type gctx struct {
	ld       [snpDigestSize]byte
	pageInfo [pageInfoSize]byte
	h        hash.Hash // reused SHA-384 state
}

func newGCTX(seed []byte) (*gctx, error) {
	g := &gctx{h: sha512.New384()}
	if seed != nil {
		if len(seed) != snpDigestSize {
			return nil, fmt.Errorf("%w: OVMF hash is %d bytes, want %d", ErrInvalidOptions, len(seed), snpDigestSize)
		}
		copy(g.ld[:], seed)
	}
	return g, nil
}

func (g *gctx) digest() []byte { return append([]byte(nil), g.ld[:]...) }

func (g *gctx) sum(data []byte) [snpDigestSize]byte {
	var out [snpDigestSize]byte
	g.h.Reset()
	g.h.Write(data)
	g.h.Sum(out[:0])
	return out
}

// update measures one page. contents is nil for the page types whose
// CONTENTS field is zero (zero, unmeasured, secrets, CPUID).
func (g *gctx) update(pageType byte, gpa uint64, contents *[snpDigestSize]byte) {
	p := &g.pageInfo
	copy(p[0x00:0x30], g.ld[:])
	if contents != nil {
		copy(p[0x30:0x60], contents[:])
	} else {
		clear(p[0x30:0x60])
	}
	binary.LittleEndian.PutUint16(p[0x60:], pageInfoSize)
	p[0x62] = pageType
	clear(p[0x63:0x68])
	binary.LittleEndian.PutUint64(p[0x68:], gpa)
	g.ld = g.sum(p[:])
}

func checkPages(what string, gpa, size uint64) error {
	if size%pageSize != 0 || gpa%pageSize != 0 {
		return fmt.Errorf("%w: %s at %#x of %#x bytes is not whole pages", ErrMalformedOVMF, what, gpa, size)
	}
	return nil
}

// normalPages measures data page by page as NORMAL pages starting at gpa.
func (g *gctx) normalPages(gpa uint64, data []byte) error {
	if err := checkPages("image", gpa, uint64(len(data))); err != nil {
		return err
	}
	for off := 0; off < len(data); off += pageSize {
		sum := g.sum(data[off : off+pageSize])
		g.update(pageTypeNormal, gpa+uint64(off), &sum)
	}
	return nil
}

// emptyPages measures size bytes at gpa as pages whose contents are not
// hashed (zero or unmeasured pages).
func (g *gctx) emptyPages(pageType byte, gpa, size uint64) error {
	if err := checkPages("section", gpa, size); err != nil {
		return err
	}
	for off := uint64(0); off < size; off += pageSize {
		g.update(pageType, gpa+off, nil)
	}
	return nil
}

func (g *gctx) secretsPage(gpa uint64) { g.update(pageTypeSecrets, gpa, nil) }

func (g *gctx) cpuidPage(gpa uint64) { g.update(pageTypeCPUID, gpa, nil) }

// vmsaPage measures a VMSA, hashed in full, at the fixed VMSA GPA.
func (g *gctx) vmsaPage(page *vmsa) {
	sum := g.sum(page[:])
	g.update(pageTypeVMSA, vmsaGPA, &sum)
}
