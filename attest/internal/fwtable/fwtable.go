// Package fwtable reads the GUIDed table that OVMF-style firmware images
// (OVMF, TDVF, coconut SVSM) carry at their end, just before the reset
// vector: each entry is data followed by a uint16 length and a GUID, read
// backwards from the table's own header (edk2 OvmfPkg/ResetVector,
// "ResetVectorVtf0.asm"). The SEV and TDX launch measurements both start
// from it.
package fwtable

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// GUID is a GUID in the mixed-endian byte order EFI stores on disk.
type GUID [16]byte

// MustGUID converts the canonical text form to the on-disk form: the first
// three groups are little-endian, the last two are bytes in order. It
// panics on a malformed literal, so use it for constants only.
func MustGUID(s string) GUID {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 || strings.Count(s, "-") != 4 {
		panic("fwtable: bad GUID literal " + s)
	}
	var g GUID
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:], b[8:])
	return g
}

// FooterGUID marks the table (OVMF_TABLE_FOOTER_GUID).
var FooterGUID = MustGUID("96b582de-1fb2-45f7-baea-a366c55a082d")

const (
	// Reserved is the part of the image after the table: the reset
	// vector code and padding.
	Reserved = 32
	// EntryHeader is the trailer of each entry: a uint16 length (covering
	// the whole entry) followed by the GUID.
	EntryHeader = 2 + 16
)

// Parse returns the entries of the table that ends Reserved bytes before
// the end of data, by GUID; each entry's value aliases data. An image
// without the table has no entries and no error. The errors describe the
// defect of a malformed table; callers wrap them with their own sentinel.
func Parse(data []byte) (map[GUID][]byte, error) {
	table := map[GUID][]byte{}
	end := len(data) - Reserved - EntryHeader
	if end < 0 || GUID(data[end+2:end+EntryHeader]) != FooterGUID {
		return table, nil
	}
	total := int(binary.LittleEndian.Uint16(data[end:]))
	if total < EntryHeader || total-EntryHeader > end {
		return nil, fmt.Errorf("footer table length %d out of range", total)
	}
	rest := data[end-(total-EntryHeader) : end]
	for len(rest) > 0 {
		if len(rest) < EntryHeader {
			return nil, fmt.Errorf("%d stray bytes in footer table", len(rest))
		}
		hdr := rest[len(rest)-EntryHeader:]
		size := int(binary.LittleEndian.Uint16(hdr))
		if size < EntryHeader || size > len(rest) {
			return nil, fmt.Errorf("footer table entry length %d out of range", size)
		}
		g := GUID(hdr[2:])
		if _, dup := table[g]; dup {
			return nil, fmt.Errorf("duplicate footer table entry %x", g[:])
		}
		table[g] = rest[len(rest)-size : len(rest)-EntryHeader]
		rest = rest[:len(rest)-size]
	}
	return table, nil
}
