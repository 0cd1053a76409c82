package fwtable

import (
	"bytes"
	"encoding/binary"
	"testing"
)

var (
	guidA = MustGUID("00000000-0000-0000-0000-00000000000a")
	guidB = MustGUID("00000000-0000-0000-0000-00000000000b")
)

// image builds 256 bytes whose footer table holds raw, the entries'
// bytes as they lie before the table header.
func image(raw []byte) []byte {
	table := binary.LittleEndian.AppendUint16(bytes.Clone(raw), uint16(len(raw)+EntryHeader))
	table = append(table, FooterGUID[:]...)
	img := make([]byte, 256)
	copy(img[len(img)-Reserved-len(table):], table)
	return img
}

func entry(g GUID, data []byte) []byte {
	e := binary.LittleEndian.AppendUint16(bytes.Clone(data), uint16(len(data)+EntryHeader))
	return append(e, g[:]...)
}

func TestMustGUID(t *testing.T) {
	// The on-disk order of 96b582de-1fb2-45f7-baea-a366c55a082d.
	want := []byte{0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d}
	if !bytes.Equal(FooterGUID[:], want) {
		t.Errorf("FooterGUID = %x, want %x", FooterGUID[:], want)
	}
	defer func() {
		if recover() == nil {
			t.Error("MustGUID accepted a malformed literal")
		}
	}()
	MustGUID("not-a-guid")
}

func TestParse(t *testing.T) {
	table, err := Parse(image(append(entry(guidA, []byte("first")), entry(guidB, nil)...)))
	if err != nil {
		t.Fatal(err)
	}
	if len(table) != 2 || string(table[guidA]) != "first" || len(table[guidB]) != 0 {
		t.Errorf("table = %q", table)
	}
	for _, n := range []int{0, 10, 256} {
		if table, err := Parse(make([]byte, n)); err != nil || len(table) != 0 {
			t.Errorf("%d zero bytes: %v, %v", n, table, err)
		}
	}
	bad := map[string][]byte{
		"duplicate":    append(entry(guidA, nil), entry(guidA, nil)...),
		"stray bytes":  append([]byte{1, 2, 3}, entry(guidA, nil)...),
		"entry length": append([]byte{0xff, 0xff}, guidA[:]...),
	}
	for name, raw := range bad {
		if _, err := Parse(image(raw)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	long := image(nil)
	binary.LittleEndian.PutUint16(long[len(long)-Reserved-EntryHeader:], 0xffff)
	if _, err := Parse(long); err == nil {
		t.Error("table longer than the image parsed")
	}
}
