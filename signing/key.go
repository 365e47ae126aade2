package signing

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"fmt"

	"github.com/emmansun/gmsm/sm2"
)

// Key is one signing or verification key bound to exactly one algorithm.
// A Key is immutable after construction and safe for concurrent use.
//
// The private half is only ever held as a crypto.Signer, so a hardware
// backend can stand in for the software keys (see NewKey).
type Key struct {
	alg    string
	id     string
	thumb  string
	pub    crypto.PublicKey
	signer crypto.Signer
	// for SM2 and P-256 keys: the public key as *ecdsa.PublicKey, kept as the
	// same pointer for every verification (the SM libraries cache per pointer).
	ec  *ecdsa.PublicKey
	rsa *rsa.PublicKey
	// za is Z_A of an SM2 key (GB/T 32918.2: SM3 of the default user ID,
	// the curve and the public key), the same for every signature: hashed
	// once here, not again per message.
	za []byte
}

// GenerateKey creates a fresh software key for alg (SM2 on the SM2 curve,
// ECDSA P-256, or RSA-3072 for RS256) with crypto/rand.
func GenerateKey(alg string) (*Key, error) {
	var (
		s   crypto.Signer
		err error
	)
	switch alg {
	case AlgSM2SM3:
		s, err = sm2.GenerateKey(rand.Reader)
	case AlgES256:
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgRS256:
		s, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, fmt.Errorf("generate %q: %w", alg, ErrUnsupportedAlg)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	return NewKey(alg, s)
}

// NewKey wraps a crypto.Signer for alg after checking its public key.
//
// Signer contract (what an HSM backend must implement):
//   - SM2SM3: Sign(rand, msg, opts) receives the raw JWS signing input and an
//     *sm2.SM2SignerOption (forceGMSign, uid DefaultUID); it computes
//     SM3(Z_A‖msg) itself and returns an ASN.1 DER (r, s) signature.
//   - ES256: Sign(rand, SHA-256 digest, crypto.SHA256), ASN.1 DER (r, s).
//   - RS256: Sign(rand, SHA-256 digest, crypto.SHA256), PKCS #1 v1.5.
//
// A *ecdsa.PrivateKey on the SM2 curve is converted to *sm2.PrivateKey (the
// plain ECDSA algorithm must never run on an SM2 key). Signers other than the
// standard software keys are self-tested once (sign and verify) so a backend
// that ignores the contract is rejected here rather than producing bad tokens.
func NewKey(alg string, s crypto.Signer) (*Key, error) {
	if s == nil {
		return nil, fmt.Errorf("nil signer: %w", ErrInvalidKey)
	}
	native := false
	switch v := s.(type) {
	case *sm2.PrivateKey:
		native = true
	case *ecdsa.PrivateKey:
		native = true
		if v.Curve != nil && isSM2Curve(v.Curve) {
			k, err := new(sm2.PrivateKey).FromECPrivateKey(v)
			if err != nil {
				return nil, fmt.Errorf("sm2 key: %v: %w", err, ErrInvalidKey)
			}
			s = k
		}
	case *rsa.PrivateKey:
		native = true
	}
	k, err := NewPublicKey(alg, s.Public())
	if err != nil {
		return nil, err
	}
	// An SM2 signer that is not SM2 (e.g. an *ecdsa.PrivateKey) must not be
	// accepted for ES256 and the reverse: checkPublic already bound the curve.
	k.signer = s
	if !native {
		msg := []byte("essc signing self-test")
		sig, err := k.signRaw(msg)
		if err != nil {
			return nil, fmt.Errorf("signer self-test: %v: %w", err, ErrInvalidKey)
		}
		if err := k.verifyRaw(msg, sig); err != nil {
			return nil, fmt.Errorf("signer self-test does not verify: %w", ErrInvalidKey)
		}
	}
	return k, nil
}

// NewPublicKey returns a verification-only Key for alg. The public key must be
// an *ecdsa.PublicKey on the SM2 curve (SM2SM3) or on P-256 (ES256), on the
// curve and not the identity, or an *rsa.PublicKey of 2048..8192 bits (RS256).
// ID is the RFC 7638 thumbprint.
func NewPublicKey(alg string, pub crypto.PublicKey) (*Key, error) {
	if !SupportedAlg(alg) {
		return nil, fmt.Errorf("key for %q: %w", alg, ErrUnsupportedAlg)
	}
	if err := checkPublic(alg, pub); err != nil {
		return nil, err
	}
	k := &Key{alg: alg, pub: pub}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		k.ec = p
		if alg == AlgSM2SM3 {
			za, err := sm2.CalculateZA(p, defaultUID)
			if err != nil {
				return nil, fmt.Errorf("SM2 Z_A: %v: %w", err, ErrInvalidKey)
			}
			k.za = za
		}
	case *rsa.PublicKey:
		k.rsa = p
	}
	k.thumb = thumbprint(k.PublicJWK())
	k.id = k.thumb
	return k, nil
}

// withID returns a copy of k whose ID is id (a kid chosen by a JWK's owner).
func (k *Key) withID(id string) *Key {
	c := *k
	c.id = id
	return &c
}

// ID returns the key's kid: the RFC 7638 thumbprint for keys created here,
// or the "kid" of the JWK it was parsed from.
func (k *Key) ID() string { return k.id }

// Thumbprint returns the RFC 7638 JWK thumbprint (SHA-256, base64url).
func (k *Key) Thumbprint() string { return k.thumb }

// Alg returns the single algorithm this key signs and verifies under.
func (k *Key) Alg() string { return k.alg }

// Public returns the public key (*ecdsa.PublicKey or *rsa.PublicKey).
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Signer returns the private half, or nil for a verification-only key.
func (k *Key) Signer() crypto.Signer { return k.signer }

// CanSign reports whether the key holds a private half.
func (k *Key) CanSign() bool { return k.signer != nil }

// Equal reports whether k and o have the same algorithm and public key.
func (k *Key) Equal(o *Key) bool {
	return k != nil && o != nil && k.alg == o.alg && k.thumb == o.thumb
}

// thumbprint computes RFC 7638 §3 over the required members in lexical order.
func thumbprint(j JWK) string {
	var buf bytes.Buffer
	q := func(s string) []byte { b, _ := json.Marshal(s); return b }
	switch j.Kty {
	case "EC":
		buf.WriteString(`{"crv":`)
		buf.Write(q(j.Crv))
		buf.WriteString(`,"kty":"EC","x":`)
		buf.Write(q(j.X))
		buf.WriteString(`,"y":`)
		buf.Write(q(j.Y))
		buf.WriteString(`}`)
	case "RSA":
		buf.WriteString(`{"e":`)
		buf.Write(q(j.E))
		buf.WriteString(`,"kty":"RSA","n":`)
		buf.Write(q(j.N))
		buf.WriteString(`}`)
	}
	sum := sha256.Sum256(buf.Bytes())
	return b64.EncodeToString(sum[:])
}
