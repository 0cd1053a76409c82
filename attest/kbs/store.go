package kbs

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

const (
	storeKeyFile  = "store.key"
	storeDataFile = "resources.enc"
	// storeMagic starts the data file and is its AES-GCM additional data,
	// so a file of another format or version never decrypts as this one.
	storeMagic = "SCCKBS\x00\x01"
)

// ErrNotFound means no resource is registered at the path.
var ErrNotFound = errors.New("resource not found")

// store keeps resources in one file in the data dir, encrypted with
// AES-256-GCM under a key kept in its own 0600 file. The whole set is
// rewritten on each change: resources are few and small (image keys).
type store struct {
	path string
	aead cipher.AEAD

	mu    sync.Mutex
	items map[string][]byte // resource path -> secret, guarded by mu
}

func openStore(dir string) (*store, error) {
	key, err := loadOrCreateSecretFile(filepath.Join(dir, storeKeyFile), 32)
	if err != nil {
		return nil, fmt.Errorf("store key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := &store{path: filepath.Join(dir, storeDataFile), aead: aead, items: map[string][]byte{}}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read store: %w", err)
	}
	if err := s.decode(data); err != nil {
		return nil, fmt.Errorf("read store %s: %w", s.path, err)
	}
	return s, nil
}

func (s *store) decode(data []byte) error {
	ns := s.aead.NonceSize()
	if len(data) < len(storeMagic)+ns || string(data[:len(storeMagic)]) != storeMagic {
		return errors.New("not a resource store file")
	}
	nonce := data[len(storeMagic) : len(storeMagic)+ns]
	plain, err := s.aead.Open(nil, nonce, data[len(storeMagic)+ns:], []byte(storeMagic))
	if err != nil {
		return errors.New("decrypt: wrong key or corrupted file")
	}
	return json.Unmarshal(plain, &s.items)
}

func (s *store) get(resource string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.items[resource]
	if !ok {
		return nil, ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (s *store) put(resource string, secret []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, had := s.items[resource]
	s.items[resource] = bytes.Clone(secret)
	if err := s.flush(); err != nil {
		// Keep memory and disk in agreement.
		if had {
			s.items[resource] = prev
		} else {
			delete(s.items, resource)
		}
		return err
	}
	return nil
}

// flush must be called with mu held.
func (s *store) flush() error {
	plain, err := json.Marshal(s.items)
	if err != nil {
		return err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	out := append([]byte(storeMagic), nonce...)
	out = s.aead.Seal(out, nonce, plain, []byte(storeMagic))
	clear(plain)
	if err := writeFileAtomic(s.path, out, 0o600); err != nil {
		return fmt.Errorf("write store: %w", err)
	}
	return nil
}

// loadOrCreateSecretFile returns the contents of a key file, creating it
// with n random bytes on first use. A key file readable by group or others
// is refused: it protects every secret the broker holds.
func loadOrCreateSecretFile(path string, n int) ([]byte, error) {
	key, err := readPrivateFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, n)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(path, key, 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, err
	}
	if len(key) != n {
		return nil, fmt.Errorf("%s is %d bytes, want %d", path, len(key), n)
	}
	return key, nil
}

// writeFileAtomic writes through a temporary file and a rename, so readers
// and a restart after a crash see the old or the new file, never half of one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
