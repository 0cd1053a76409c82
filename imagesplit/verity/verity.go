// Package verity computes a dm-verity hash tree (format 1) the way
// `veritysetup format` lays it out, so that the kernel's dm-verity target,
// and veritysetup itself, accept it unchanged.
//
// Layout of the hash file: an optional 512-byte superblock padded to one
// hash block, then the tree, top level (one block) first and the level
// hashing the data blocks last. Each digest is SHA-256(salt || block);
// each hash block holds 128 digests and is zero-filled after the last one.
// A single data block has no tree: the root hash is that block's digest.
package verity

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
)

const (
	// BlockSize is the data and hash block size: the page size the guest
	// kernel verifies in.
	BlockSize = 4096
	// HashFormat is the dm-verity hash type (1: salt before data).
	HashFormat = 1
	// Algorithm is the hash algorithm name as dm-verity spells it.
	Algorithm = "sha256"

	digestSize     = sha256.Size
	digestsPerHash = BlockSize / digestSize // digestSize is a power of two: no padding per digest
	saltMax        = 256
)

// Params choose how the tree is built.
type Params struct {
	// Salt is mixed into every digest. Nil means a random 32-byte salt.
	Salt []byte
	// UUID goes into the superblock. Zero means a random one.
	UUID [16]byte
	// NoSuperblock writes the bare tree, as `veritysetup format
	// --no-superblock` does; the verifier must then be given all
	// parameters explicitly.
	NoSuperblock bool
}

// Result describes a written hash tree.
type Result struct {
	RootHash   []byte
	Salt       []byte
	UUID       [16]byte
	DataBlocks uint64
	// HashOffset is where the tree starts in the hash file (BlockSize with
	// a superblock, 0 without).
	HashOffset int64
}

// ErrUnaligned reports a data file whose size is not a multiple of BlockSize.
var ErrUnaligned = errors.New("data size is not a multiple of the block size")

// FormatFile builds the hash tree of the file at dataPath into a new file
// at hashPath.
func FormatFile(dataPath, hashPath string, p Params) (*Result, error) {
	data, err := os.Open(dataPath)
	if err != nil {
		return nil, fmt.Errorf("open data: %w", err)
	}
	defer data.Close()
	st, err := data.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat data: %w", err)
	}
	out, err := os.Create(hashPath)
	if err != nil {
		return nil, fmt.Errorf("create hash file: %w", err)
	}
	res, err := Format(data, st.Size(), out, p)
	if cerr := out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close hash file: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Format reads size bytes of data and writes the hash file to w.
func Format(data io.Reader, size int64, w io.Writer, p Params) (*Result, error) {
	if size <= 0 || size%BlockSize != 0 {
		return nil, fmt.Errorf("data of %d bytes: %w", size, ErrUnaligned)
	}
	res := &Result{Salt: p.Salt, UUID: p.UUID, DataBlocks: uint64(size / BlockSize)}
	if res.Salt == nil {
		res.Salt = make([]byte, 32)
		if _, err := rand.Read(res.Salt); err != nil {
			return nil, fmt.Errorf("generate salt: %w", err)
		}
	}
	if len(res.Salt) > saltMax {
		return nil, fmt.Errorf("salt of %d bytes exceeds %d", len(res.Salt), saltMax)
	}
	if res.UUID == ([16]byte{}) && !p.NoSuperblock {
		if _, err := rand.Read(res.UUID[:]); err != nil {
			return nil, fmt.Errorf("generate uuid: %w", err)
		}
		res.UUID[6] = res.UUID[6]&0x0f | 0x40 // version 4
		res.UUID[8] = res.UUID[8]&0x3f | 0x80 // RFC 4122 variant
	}

	// levels[0] hashes the data blocks, levels[i] hashes levels[i-1].
	var levels [][]byte
	leaf, err := hashLevel(bufio.NewReaderSize(io.LimitReader(data, size), 1<<20), res.DataBlocks, res.Salt)
	if err != nil {
		return nil, err
	}
	var root []byte
	if res.DataBlocks == 1 {
		root = leaf[:digestSize]
	} else {
		levels = append(levels, leaf)
		for len(levels[len(levels)-1]) > BlockSize {
			prev := levels[len(levels)-1]
			next, err := hashLevel(bytesReader(prev), uint64(len(prev)/BlockSize), res.Salt)
			if err != nil {
				return nil, err
			}
			levels = append(levels, next)
		}
		root = digest(res.Salt, levels[len(levels)-1])
	}
	res.RootHash = root

	if !p.NoSuperblock {
		sb := superblock(res)
		if _, err := w.Write(sb); err != nil {
			return nil, fmt.Errorf("write superblock: %w", err)
		}
		res.HashOffset = BlockSize
	}
	for i := len(levels) - 1; i >= 0; i-- {
		if _, err := w.Write(levels[i]); err != nil {
			return nil, fmt.Errorf("write hash level %d: %w", i, err)
		}
	}
	return res, nil
}

// hashLevel digests n blocks from r into hash blocks (zero-padded).
func hashLevel(r io.Reader, n uint64, salt []byte) ([]byte, error) {
	hashBlocks := (n + digestsPerHash - 1) / digestsPerHash
	out := make([]byte, hashBlocks*BlockSize)
	block := make([]byte, BlockSize)
	h := sha256.New()
	for i := uint64(0); i < n; i++ {
		if _, err := io.ReadFull(r, block); err != nil {
			return nil, fmt.Errorf("read block %d: %w", i, err)
		}
		h.Reset()
		h.Write(salt)
		h.Write(block)
		h.Sum(out[i*digestSize : i*digestSize : (i+1)*digestSize])
	}
	return out, nil
}

func digest(salt, block []byte) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(block)
	return h.Sum(nil)
}
