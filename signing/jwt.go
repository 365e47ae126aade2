package signing

import (
	"crypto/ecdsa"
	"fmt"
	"sync"

	"github.com/emmansun/gmsm/sm2"
	"github.com/golang-jwt/jwt/v5"
)

// SigningMethodSM2 is the golang-jwt/jwt/v5 signing method for AlgSM2SM3.
// It is stateless; use the SigningMethodSM2SM3 value.
type SigningMethodSM2 struct{}

// SigningMethodSM2SM3 implements jwt.SigningMethod for "SM2SM3" with the
// same strict rules as Verify. Keys accepted:
//   - Sign: a *Key of AlgSM2SM3 with a private half, or an *sm2.PrivateKey.
//   - Verify: a *Key of AlgSM2SM3, an *sm2.PrivateKey, or an
//     *ecdsa.PublicKey on the SM2 curve.
//
// Any other key (an ES256 *Key, a P-256 key) fails with jwt.ErrInvalidKeyType
// and ErrAlgMismatch, so an SM2 key never verifies under another method.
var SigningMethodSM2SM3 = SigningMethodSM2{}

var _ jwt.SigningMethod = SigningMethodSM2{}

// Alg returns "SM2SM3".
func (SigningMethodSM2) Alg() string { return AlgSM2SM3 }

// Sign returns the 64-octet R‖S signature of signingString.
func (SigningMethodSM2) Sign(signingString string, key any) ([]byte, error) {
	var k *Key
	switch v := key.(type) {
	case *Key:
		k = v
	case *sm2.PrivateKey:
		var err error
		if k, err = NewKey(AlgSM2SM3, v); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("SM2SM3 signing key %T: %w: %w", key, jwt.ErrInvalidKeyType, ErrInvalidKey)
	}
	if k == nil || k.alg != AlgSM2SM3 || k.signer == nil {
		return nil, fmt.Errorf("SM2SM3 needs an SM2 private key: %w: %w", jwt.ErrInvalidKey, ErrAlgMismatch)
	}
	return k.signRaw([]byte(signingString))
}

// Verify checks sig (R‖S, exactly 64 octets) over signingString.
func (SigningMethodSM2) Verify(signingString string, sig []byte, key any) error {
	var k *Key
	switch v := key.(type) {
	case *Key:
		k = v
	case *sm2.PrivateKey:
		k = nil
		pk, err := NewPublicKey(AlgSM2SM3, &v.PublicKey)
		if err != nil {
			return fmt.Errorf("%w: %w", jwt.ErrInvalidKey, err)
		}
		k = pk
	case *ecdsa.PublicKey:
		pk, err := NewPublicKey(AlgSM2SM3, v)
		if err != nil {
			return fmt.Errorf("%w: %w", jwt.ErrInvalidKey, err)
		}
		k = pk
	default:
		return fmt.Errorf("SM2SM3 verification key %T: %w: %w", key, jwt.ErrInvalidKeyType, ErrInvalidKey)
	}
	if k == nil || k.alg != AlgSM2SM3 {
		return fmt.Errorf("SM2SM3 needs an SM2 key: %w: %w", jwt.ErrInvalidKeyType, ErrAlgMismatch)
	}
	return k.verifyRaw([]byte(signingString), sig)
}

// registerOnce guards RegisterJWT; jwt's registry is itself process-global.
var registerOnce sync.Once

// RegisterJWT registers SigningMethodSM2SM3 under "SM2SM3" with golang-jwt so
// jwt.Parse accepts it (callers must still restrict methods with
// jwt.WithValidMethods). Idempotent and safe for concurrent use; nothing is
// registered until a caller calls it.
func RegisterJWT() {
	registerOnce.Do(func() {
		jwt.RegisterSigningMethod(AlgSM2SM3, func() jwt.SigningMethod { return SigningMethodSM2SM3 })
	})
}
