//lint:file-ignore SA1019 SM2 public keys are *ecdsa.PublicKey on a curve outside the standard library (github.com/emmansun/gmsm); their affine X, Y are the only interface that library offers, and the keys are validated on the curve before use.

package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
)

// The JOSE algorithms of the essc profile (docs/PROTOCOL.md, DESIGN.md §4).
const (
	// AlgSM2SM3 is SM2 (GB/T 32918) over SM3 with the GM/T 0009 default user
	// ID; signature R‖S, 32 octets each, big-endian.
	AlgSM2SM3 = "SM2SM3"
	// AlgES256 is ECDSA P-256 with SHA-256 (RFC 7518 §3.4), signature R‖S.
	AlgES256 = "ES256"
	// AlgRS256 is RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3), keys ≥ 2048 bits.
	AlgRS256 = "RS256"
)

// DefaultUID is the SM2 signer user ID of GM/T 0009 used for every SM2SM3
// signature of this profile.
const DefaultUID = "1234567812345678"

// MinRSABits is the smallest RSA modulus accepted for RS256.
const MinRSABits = 2048

// maxRSABits bounds RSA keys accepted from untrusted input (verification cost).
const maxRSABits = 8192

// Algs lists the supported algorithms in a stable order.
func Algs() []string { return []string{AlgSM2SM3, AlgES256, AlgRS256} }

// SupportedAlg reports whether alg is one of AlgSM2SM3, AlgES256, AlgRS256.
func SupportedAlg(alg string) bool {
	switch alg {
	case AlgSM2SM3, AlgES256, AlgRS256:
		return true
	}
	return false
}

var (
	defaultUID = []byte(DefaultUID)
	// sm2Opts makes an SM2 crypto.Signer hash Z_A‖M with SM3 itself: the
	// message passed to Sign is the raw JWS signing input, not a digest.
	sm2Opts = sm2.NewSM2SignerOption(true, defaultUID)
	b64     = base64.RawURLEncoding.Strict()
)

// HalfHash computes at_hash / c_hash (OpenID Connect Core §3.1.3.6, §3.3.2.11)
// for a token s issued under alg: base64url of the left half of SM3(s) for
// SM2SM3 (16 octets, DESIGN.md §4), of SHA-256(s) for ES256 and RS256.
func HalfHash(alg, s string) (string, error) {
	var sum [32]byte
	switch alg {
	case AlgSM2SM3:
		sum = sm3.Sum([]byte(s))
	case AlgES256, AlgRS256:
		sum = sha256.Sum256([]byte(s))
	default:
		return "", fmt.Errorf("half hash for %q: %w", alg, ErrUnsupportedAlg)
	}
	return b64.EncodeToString(sum[:16]), nil
}

// isSM2Curve / isP256Curve identify the curve of a public key.
func isSM2Curve(c elliptic.Curve) bool  { return c == sm2.P256() }
func isP256Curve(c elliptic.Curve) bool { return c == elliptic.P256() }

// checkPublic validates pub for alg: type, curve, point on curve and not the
// identity (ecdsa keys), modulus size and exponent (RSA).
func checkPublic(alg string, pub crypto.PublicKey) error {
	switch alg {
	case AlgSM2SM3, AlgES256:
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok || ec == nil || ec.X == nil || ec.Y == nil || ec.Curve == nil {
			return fmt.Errorf("%s needs an EC public key, got %T: %w", alg, pub, ErrInvalidKey)
		}
		if alg == AlgSM2SM3 && !isSM2Curve(ec.Curve) {
			return fmt.Errorf("SM2SM3 needs the SM2 curve: %w", ErrInvalidKey)
		}
		if alg == AlgES256 && !isP256Curve(ec.Curve) {
			return fmt.Errorf("ES256 needs the P-256 curve: %w", ErrInvalidKey)
		}
		if _, err := uncompressedPoint(ec); err != nil {
			return err
		}
		return nil
	case AlgRS256:
		r, ok := pub.(*rsa.PublicKey)
		if !ok || r == nil || r.N == nil {
			return fmt.Errorf("RS256 needs an RSA public key, got %T: %w", pub, ErrInvalidKey)
		}
		if bits := r.N.BitLen(); bits < MinRSABits || bits > maxRSABits {
			return fmt.Errorf("RSA modulus of %d bits: %w", bits, ErrInvalidKey)
		}
		if r.E < 3 || r.E%2 == 0 {
			return fmt.Errorf("RSA exponent %d: %w", r.E, ErrInvalidKey)
		}
		return nil
	}
	return fmt.Errorf("%q: %w", alg, ErrUnsupportedAlg)
}

// uncompressedPoint returns 04‖X‖Y after checking, with the curve's own
// constant-time parser, that the point is on the curve and not the identity.
func uncompressedPoint(ec *ecdsa.PublicKey) ([]byte, error) {
	if ec.X.Sign() < 0 || ec.Y.Sign() < 0 || ec.X.BitLen() > 256 || ec.Y.BitLen() > 256 {
		return nil, fmt.Errorf("coordinate out of range: %w", ErrInvalidKey)
	}
	buf := make([]byte, 65)
	buf[0] = 4
	ec.X.FillBytes(buf[1:33])
	ec.Y.FillBytes(buf[33:])
	var err error
	if isSM2Curve(ec.Curve) {
		_, err = sm2.NewPublicKey(buf)
	} else if isP256Curve(ec.Curve) {
		_, err = ecdsa.ParseUncompressedPublicKey(elliptic.P256(), buf)
	} else {
		return nil, fmt.Errorf("curve %s: %w", ec.Curve.Params().Name, ErrUnsupportedAlg)
	}
	if err != nil {
		return nil, fmt.Errorf("public point: %v: %w", err, ErrInvalidKey)
	}
	return buf, nil
}
