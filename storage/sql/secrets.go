package sql

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"

	"github.com/essc-project/essc/storage"
)

// Secrets are the registry's keys. They come from the key directory and are
// never logged (String redacts them).
type Secrets struct {
	// SSNKey is the 16-octet SM4 key encrypting social security numbers (GCM).
	SSNKey []byte
	// IndexKey is the HMAC-SM3 key of the SSN blind index (≥ 32 octets).
	IndexKey []byte
	// AuditKey is the HMAC-SM3 key of the audit chain (≥ 32 octets).
	AuditKey []byte
	// PINKey is the card domain's PIN-verifier key (≥ 32 octets). The store
	// never uses it; it lives here so one key directory holds every registry key.
	PINKey []byte
	// ClientSecretKey keys the HMAC-SM3 hashes of client secrets (idp/secret);
	// esscctl and esscd must share it, so it lives in the same directory.
	ClientSecretKey []byte
	// PairwiseKey keys pairwise subjects. Never rotate it: every subject a
	// relying party knows depends on it.
	PairwiseKey []byte
	// TokenKey keys the HMAC of authorization codes and refresh tokens and
	// the integrity of pending login state.
	TokenKey []byte
}

// String never prints key material.
func (Secrets) String() string { return "sql.Secrets{redacted}" }

// GoString never prints key material.
func (Secrets) GoString() string { return "sql.Secrets{redacted}" }

func (s Secrets) validate() error {
	switch {
	case len(s.SSNKey) != 16:
		return fmt.Errorf("sql: SSN key must be 16 octets (SM4): %w", storage.ErrInvalidRecord)
	case len(s.IndexKey) < 32:
		return fmt.Errorf("sql: index key must be at least 32 octets: %w", storage.ErrInvalidRecord)
	case len(s.AuditKey) < 32:
		return fmt.Errorf("sql: audit key must be at least 32 octets: %w", storage.ErrInvalidRecord)
	}
	return nil
}

// secretFiles names the files of the key directory and their sizes.
var secretFiles = []struct {
	name string
	size int
}{
	{"registry-ssn.key", 16},
	{"registry-index.key", 32},
	{"registry-audit.key", 32},
	{"registry-pin.key", 32},
	{"server-client-secret.key", 32},
	{"server-pairwise.key", 32},
	{"server-token.key", 32},
}

// LoadOrCreateSecrets reads the registry and server keys from dir (hex-encoded
// files registry-ssn.key, registry-index.key, registry-audit.key,
// registry-pin.key, server-client-secret.key, server-pairwise.key,
// server-token.key),
// creating missing ones with crypto/rand as 0600 files in a 0700 directory.
// Creation uses O_EXCL, so two processes starting together cannot both write
// a key: the loser reads the winner's file. A file that exists but is
// malformed is an error, never silently replaced (that would make every
// encrypted SSN unreadable).
func LoadOrCreateSecrets(dir string) (Secrets, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Secrets{}, fmt.Errorf("sql: key directory: %w", err)
	}
	keys := make([][]byte, len(secretFiles))
	for i, f := range secretFiles {
		k, err := loadOrCreateKey(filepath.Join(dir, f.name), f.size)
		if err != nil {
			return Secrets{}, err
		}
		keys[i] = k
	}
	return Secrets{SSNKey: keys[0], IndexKey: keys[1], AuditKey: keys[2], PINKey: keys[3],
		ClientSecretKey: keys[4], PairwiseKey: keys[5], TokenKey: keys[6]}, nil
}

func loadOrCreateKey(path string, size int) ([]byte, error) {
	k := make([]byte, size)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		_, werr := f.WriteString(hex.EncodeToString(k) + "\n")
		serr := f.Sync()
		cerr := f.Close()
		if err := errors.Join(werr, serr, cerr); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("sql: write key %s: %w", filepath.Base(path), err)
		}
		return k, nil
	case !errors.Is(err, fs.ErrExist):
		return nil, fmt.Errorf("sql: create key %s: %w", filepath.Base(path), err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sql: read key %s: %w", filepath.Base(path), err)
	}
	k, err = hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != size {
		return nil, fmt.Errorf("sql: key %s is malformed (want %d hex-encoded octets): %w", filepath.Base(path), size, storage.ErrInvalidRecord)
	}
	return k, nil
}

// ssnVersion prefixes every ciphertext so the scheme can change later.
const ssnVersion = 1

// normalizeSSN upper-cases the check character x → X so lookups and storage agree.
func normalizeSSN(ssn string) string { return strings.ToUpper(strings.TrimSpace(ssn)) }

// blindIndex is HMAC-SM3(IndexKey, "essc-ssn-index-v1" ‖ SSN).
func (s *Store) blindIndex(ssn string) []byte {
	m := hmac.New(sm3.New, s.secrets.IndexKey)
	m.Write([]byte("essc-ssn-index-v1\x00"))
	m.Write([]byte(normalizeSSN(ssn)))
	return m.Sum(nil)
}

func (s *Store) ssnAEAD() (cipher.AEAD, error) {
	b, err := sm4.NewCipher(s.secrets.SSNKey)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func ssnAAD(holderID string) []byte { return []byte("essc-ssn-v1\x00" + holderID) }

// encryptSSN seals the SSN with SM4-GCM; the holder id is the associated data,
// so a ciphertext copied to another holder row fails to open.
func (s *Store) encryptSSN(holderID, ssn string) ([]byte, error) {
	aead, err := s.ssnAEAD()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(ssn)+aead.Overhead())
	out[0] = ssnVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[1:], []byte(normalizeSSN(ssn)), ssnAAD(holderID)), nil
}

func (s *Store) decryptSSN(holderID string, ct []byte) (string, error) {
	aead, err := s.ssnAEAD()
	if err != nil {
		return "", err
	}
	if len(ct) < 1+aead.NonceSize()+aead.Overhead() || ct[0] != ssnVersion {
		return "", fmt.Errorf("sql: stored SSN ciphertext malformed: %w", storage.ErrInvalidRecord)
	}
	n := 1 + aead.NonceSize()
	pt, err := aead.Open(nil, ct[1:n], ct[n:], ssnAAD(holderID))
	if err != nil {
		return "", fmt.Errorf("sql: stored SSN fails authentication: %w", storage.ErrInvalidRecord)
	}
	return string(pt), nil
}

// maskSSN keeps the first 4 and last 4 characters: 4113**********1234.
func maskSSN(ssn string) string {
	ssn = normalizeSSN(ssn)
	if len(ssn) < 12 {
		return strings.Repeat("*", len(ssn))
	}
	return ssn[:4] + strings.Repeat("*", len(ssn)-8) + ssn[len(ssn)-4:]
}
