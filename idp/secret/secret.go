package secret

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"errors"

	"github.com/emmansun/gmsm/sm3"
)

// MinKeySize is the minimum length of the HMAC key.
const MinKeySize = 32

// ErrShortKey is returned when the HMAC key is shorter than MinKeySize.
var ErrShortKey = errors.New("secret: hmac key shorter than 32 bytes")

// Hash returns HMAC-SM3(key, "essc-client-secret-v1" || 0x00 || secret).
// The domain prefix keeps these hashes distinct from every other HMAC-SM3 use
// of the same key.
func Hash(key []byte, secret string) ([]byte, error) {
	if len(key) < MinKeySize {
		return nil, ErrShortKey
	}
	m := hmac.New(sm3.New, key)
	m.Write([]byte("essc-client-secret-v1\x00"))
	m.Write([]byte(secret))
	return m.Sum(nil), nil
}

// Equal reports whether secret hashes to want, in time independent of where
// the two differ. An empty want (no secret registered) never matches.
func Equal(key []byte, secret string, want []byte) bool {
	if len(want) == 0 {
		return false
	}
	got, err := Hash(key, secret)
	if err != nil {
		return false
	}
	return hmac.Equal(got, want)
}

// Generate returns a new random client secret (256 bits, base64url) and its hash.
func Generate(key []byte) (plain string, hash []byte, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, err
	}
	plain = base64.RawURLEncoding.EncodeToString(b[:])
	hash, err = Hash(key, plain)
	return plain, hash, err
}

// Hasher adapts Hash to the hashing interface of the admin API
// (idp/admin.SecretHasher): wire it with the provider's ClientSecretKey so
// the token endpoint's Equal matches what was stored.
type Hasher struct {
	Key []byte
}

// Hash returns Hash(h.Key, string(data)).
func (h Hasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	return Hash(h.Key, string(data))
}
