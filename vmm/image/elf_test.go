package image

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"sort"
	"testing"
)

// elfHeader returns an ELF64 little-endian x86-64 header of the given type.
func elfHeader(typ elf.Type) elf.Header64 {
	h := elf.Header64{
		Type: uint16(typ), Machine: uint16(elf.EM_X86_64),
		Version: uint32(elf.EV_CURRENT), Ehsize: 64,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	return h
}

func writeLE(t *testing.T, parts ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, p := range parts {
		if err := binary.Write(&b, binary.LittleEndian, p); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// moduleELF returns a minimal relocatable ELF with a .modinfo section made
// of the given key=value fields, as a kernel module has.
func moduleELF(t *testing.T, fields ...string) []byte {
	t.Helper()
	var modinfo []byte
	for _, f := range fields {
		modinfo = append(append(modinfo, f...), 0)
	}
	sections := map[string][]byte{".modinfo": modinfo, ".text": {0xc3}}
	names := make([]string, 0, len(sections))
	for n := range sections {
		names = append(names, n)
	}
	sort.Strings(names)

	shstr := []byte{0}
	var body []byte
	headers := []elf.Section64{{}}
	off := uint64(64)
	for _, n := range append(names, ".shstrtab") {
		data := sections[n]
		typ := elf.SHT_PROGBITS
		if n == ".shstrtab" {
			data = append(shstr, n...)
			data = append(data, 0)
			typ = elf.SHT_STRTAB
		}
		headers = append(headers, elf.Section64{Name: uint32(len(shstr)), Type: uint32(typ), Off: off, Size: uint64(len(data)), Addralign: 1})
		shstr = append(append(shstr, n...), 0)
		body = append(body, data...)
		off += uint64(len(data))
	}
	h := elfHeader(elf.ET_REL)
	h.Shoff, h.Shentsize, h.Shnum, h.Shstrndx = off, 64, uint16(len(headers)), uint16(len(headers)-1)
	return writeLE(t, h, body, headers)
}

// fakeVmlinux returns a small ELF executable with one PT_LOAD segment and a
// PT_NOTE segment, holding the Xen PVH entry note when pvh is set.
func fakeVmlinux(t *testing.T, pvh bool) []byte {
	t.Helper()
	code := bytes.Repeat([]byte{0x90}, 64)
	noteType := uint32(xenElfnotePhys32Entry)
	if !pvh {
		noteType = 1 // a Xen note, but not the entry point
	}
	// A Linux note first, so the parser has to walk past it.
	note := writeLE(t,
		uint32(6), uint32(4), uint32(0x100), []byte("Linux\x00\x00\x00"), uint32(0),
		uint32(4), uint32(4), noteType, []byte("Xen\x00"), uint32(0x1000000),
	)
	const phoff = 64
	dataOff := uint64(phoff + 2*56)
	progs := []elf.Prog64{
		{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Off: dataOff, Vaddr: 0x1000000, Paddr: 0x1000000, Filesz: uint64(len(code)), Memsz: uint64(len(code)), Align: 0x1000},
		{Type: uint32(elf.PT_NOTE), Flags: uint32(elf.PF_R), Off: dataOff + uint64(len(code)), Filesz: uint64(len(note)), Memsz: uint64(len(note)), Align: 4},
	}
	h := elfHeader(elf.ET_EXEC)
	h.Entry, h.Phoff, h.Phentsize, h.Phnum = 0x1000000, phoff, 56, uint16(len(progs))
	return writeLE(t, h, progs, code, note)
}
