package verity

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// requireVeritysetup skips where cryptsetup-bin is not installed.
func requireVeritysetup(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("veritysetup")
	if err != nil {
		t.Skip("veritysetup not found (apt-get install cryptsetup-bin)")
	}
	return p
}

func writeData(t *testing.T, dir string, blocks int, seed uint64) string {
	t.Helper()
	b := make([]byte, blocks*BlockSize)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	p := filepath.Join(dir, "data.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var rootHashLine = regexp.MustCompile(`Root hash:\s+([0-9a-f]+)`)

func TestFormatMatchesVeritysetup(t *testing.T) {
	vs := requireVeritysetup(t)
	salt := bytes.Repeat([]byte{0xa5}, 32)
	uuid := [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	uuidStr := "12345678-9abc-4def-8123-456789abcdef"
	// 1 block: no tree; 128: one full hash block; 129: two levels;
	// 16385: three levels.
	for _, blocks := range []int{1, 2, 128, 129, 300, 16385} {
		for _, sb := range []bool{true, false} {
			t.Run(filepath.Join(strconv.Itoa(blocks), map[bool]string{true: "superblock", false: "bare"}[sb]), func(t *testing.T) {
				dir := t.TempDir()
				data := writeData(t, dir, blocks, uint64(blocks))
				ours := filepath.Join(dir, "ours.hash")
				res, err := FormatFile(data, ours, Params{Salt: salt, UUID: uuid, NoSuperblock: !sb})
				if err != nil {
					t.Fatal(err)
				}
				theirs := filepath.Join(dir, "theirs.hash")
				args := []string{"format", "--hash=sha256", "--format=1", "--data-block-size=4096", "--hash-block-size=4096",
					"--salt=" + hex.EncodeToString(salt)}
				if sb {
					args = append(args, "--uuid="+uuidStr)
				} else {
					args = append(args, "--no-superblock")
				}
				out, err := exec.Command(vs, append(args, data, theirs)...).CombinedOutput()
				if err != nil {
					t.Fatalf("veritysetup format: %v\n%s", err, out)
				}
				m := rootHashLine.FindSubmatch(out)
				if m == nil {
					t.Fatalf("no root hash in veritysetup output:\n%s", out)
				}
				if got := hex.EncodeToString(res.RootHash); got != string(m[1]) {
					t.Errorf("root hash %s, veritysetup %s", got, m[1])
				}
				a, _ := os.ReadFile(ours)
				b, _ := os.ReadFile(theirs)
				if !bytes.Equal(a, b) {
					t.Errorf("hash file differs from veritysetup's (%d vs %d bytes)", len(a), len(b))
				}

				vargs := []string{"verify"}
				if !sb {
					vargs = append(vargs, "--no-superblock", "--hash=sha256", "--format=1", "--data-block-size=4096",
						"--hash-block-size=4096", "--salt="+hex.EncodeToString(salt))
				}
				vargs = append(vargs, data, ours, hex.EncodeToString(res.RootHash))
				if out, err := exec.Command(vs, vargs...).CombinedOutput(); err != nil {
					t.Errorf("veritysetup verify of our tree: %v\n%s", err, out)
				}

				// A flipped data bit must fail verification.
				f, err := os.OpenFile(data, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 1)
				off := int64(blocks*BlockSize - 1)
				f.ReadAt(buf, off)
				buf[0] ^= 1
				f.WriteAt(buf, off)
				f.Close()
				if err := exec.Command(vs, vargs...).Run(); err == nil {
					t.Error("veritysetup verify passed after the data was changed")
				}
			})
		}
	}
}

func TestFormatRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		size int64
		p    Params
	}{
		"empty":     {0, Params{}},
		"unaligned": {BlockSize + 1, Params{}},
		"long salt": {BlockSize, Params{Salt: make([]byte, 257)}},
	} {
		t.Run(name, func(t *testing.T) {
			data := bytes.NewReader(make([]byte, tc.size))
			if _, err := Format(data, tc.size, new(bytes.Buffer), tc.p); err == nil {
				t.Error("Format succeeded")
			}
		})
	}
}

func TestRandomSaltDiffers(t *testing.T) {
	data := make([]byte, 2*BlockSize)
	a, err := Format(bytes.NewReader(data), int64(len(data)), new(bytes.Buffer), Params{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Format(bytes.NewReader(data), int64(len(data)), new(bytes.Buffer), Params{})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Salt, b.Salt) || bytes.Equal(a.RootHash, b.RootHash) {
		t.Error("two random salts gave the same salt or root hash")
	}
}
