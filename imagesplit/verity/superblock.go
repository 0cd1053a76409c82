package verity

import (
	"bytes"
	"encoding/binary"
	"io"
)

// superblock encodes the 512-byte on-disk struct verity_sb (little
// endian), padded to one hash block:
//
//	signature[8] "verity\0\0", version u32 (1), hash_type u32,
//	uuid[16], algorithm[32], data_block_size u32, hash_block_size u32,
//	data_blocks u64, salt_size u16, pad[6], salt[256], pad[168]
func superblock(r *Result) []byte {
	b := make([]byte, BlockSize)
	copy(b[0:8], "verity")
	binary.LittleEndian.PutUint32(b[8:], 1)
	binary.LittleEndian.PutUint32(b[12:], HashFormat)
	copy(b[16:32], r.UUID[:])
	copy(b[32:64], Algorithm)
	binary.LittleEndian.PutUint32(b[64:], BlockSize)
	binary.LittleEndian.PutUint32(b[68:], BlockSize)
	binary.LittleEndian.PutUint64(b[72:], r.DataBlocks)
	binary.LittleEndian.PutUint16(b[80:], uint16(len(r.Salt)))
	copy(b[88:88+saltMax], r.Salt)
	return b
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
