//lint:file-ignore SA1019 SM2 public keys are *ecdsa.PublicKey on a curve outside the standard library (github.com/emmansun/gmsm); their affine X, Y are the only interface that library offers, and the keys are validated on the curve before use.

package signing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/emmansun/gmsm/sm2"
)

// CrvSM2 is the JWK "crv" of SM2 public keys in the essc profile (DESIGN.md §4).
const CrvSM2 = "SM2"

// maxJWKSize and maxJWKSKeys bound untrusted JWK / JWKS input.
const (
	maxJWKSize  = 16 << 10
	maxJWKSSize = 256 << 10
	maxJWKSKeys = 64
)

// JWK is the public JSON Web Key (RFC 7517) form of a Key. SM2 keys are
// {"kty":"EC","crv":"SM2",...}. It never carries private material.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
}

// JWKS is a JWK Set (RFC 7517 §5), the body of a jwks_uri.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// PublicJWK returns the public JWK of k with kid, "use":"sig" and "alg".
func (k *Key) PublicJWK() JWK {
	j := JWK{Kid: k.id, Use: "sig", Alg: k.alg}
	switch {
	case k.ec != nil:
		j.Kty = "EC"
		if isSM2Curve(k.ec.Curve) {
			j.Crv = CrvSM2
		} else {
			j.Crv = "P-256"
		}
		var buf [32]byte
		k.ec.X.FillBytes(buf[:])
		j.X = b64.EncodeToString(buf[:])
		k.ec.Y.FillBytes(buf[:])
		j.Y = b64.EncodeToString(buf[:])
	case k.rsa != nil:
		j.Kty = "RSA"
		j.N = b64.EncodeToString(k.rsa.N.Bytes())
		j.E = b64.EncodeToString(big.NewInt(int64(k.rsa.E)).Bytes())
	}
	return j
}

// privateMembers are JWK members that carry private key material (RFC 7518 §6).
var privateMembers = [...]string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// ParseJWK parses one public JWK strictly: a single JSON object with unique
// members; "kty" EC with "crv" SM2 or P-256 and full-length 32-octet x, y on
// the curve (not the identity), or "kty" RSA with canonical n (2048..8192
// bits) and e; no private members; "use", when present, "sig"; "alg", when
// present, the one algorithm the key type implies (SM2 → SM2SM3, P-256 →
// ES256, RSA → RS256). The Key's ID is the "kid" when present, else the
// RFC 7638 thumbprint. Unknown members are ignored (RFC 7517 §4).
func ParseJWK(data []byte) (*Key, error) {
	if len(data) > maxJWKSize {
		return nil, fmt.Errorf("jwk: %d octets: %w", len(data), ErrMalformed)
	}
	m, err := parseObject(data)
	if err != nil {
		return nil, fmt.Errorf("jwk: %w", err)
	}
	return jwkFromMembers(m)
}

func jwkFromMembers(m map[string]json.RawMessage) (*Key, error) {
	for _, p := range privateMembers {
		if _, ok := m[p]; ok {
			return nil, fmt.Errorf("jwk: private member %q: %w", p, ErrInvalidKey)
		}
	}
	str := func(name string) (string, bool, error) { return stringMember(m, name) }
	kty, ok, err := str("kty")
	if err != nil {
		return nil, fmt.Errorf("jwk: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("jwk: no kty: %w", ErrMalformed)
	}
	use, useSet, err := str("use")
	if err != nil {
		return nil, fmt.Errorf("jwk: %w", err)
	}
	if useSet && use != "sig" {
		return nil, fmt.Errorf("jwk: use %q: %w", use, ErrInvalidKey)
	}
	alg, algSet, err := str("alg")
	if err != nil {
		return nil, fmt.Errorf("jwk: %w", err)
	}
	kid, kidSet, err := str("kid")
	if err != nil {
		return nil, fmt.Errorf("jwk: %w", err)
	}
	var key *Key
	switch kty {
	case "EC":
		crv, _, err := str("crv")
		if err != nil {
			return nil, fmt.Errorf("jwk: %w", err)
		}
		var (
			curve   elliptic.Curve
			implied string
		)
		switch crv {
		case CrvSM2:
			curve, implied = sm2.P256(), AlgSM2SM3
		case "P-256":
			curve, implied = elliptic.P256(), AlgES256
		default:
			return nil, fmt.Errorf("jwk: crv %q: %w", crv, ErrUnsupportedAlg)
		}
		if algSet && alg != implied {
			return nil, fmt.Errorf("jwk: alg %q with crv %q: %w", alg, crv, ErrAlgMismatch)
		}
		x, err := fixedB64(m, "x", 32)
		if err != nil {
			return nil, err
		}
		y, err := fixedB64(m, "y", 32)
		if err != nil {
			return nil, err
		}
		pub := &ecdsa.PublicKey{Curve: curve, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		if key, err = NewPublicKey(implied, pub); err != nil {
			return nil, fmt.Errorf("jwk: %w", err)
		}
	case "RSA":
		if algSet && alg != AlgRS256 {
			return nil, fmt.Errorf("jwk: alg %q with kty RSA: %w", alg, ErrAlgMismatch)
		}
		n, err := canonicalB64Int(m, "n", maxRSABits/8)
		if err != nil {
			return nil, err
		}
		e, err := canonicalB64Int(m, "e", 4)
		if err != nil {
			return nil, err
		}
		if !e.IsInt64() || e.Int64() > 1<<31-1 {
			return nil, fmt.Errorf("jwk: e too large: %w", ErrInvalidKey)
		}
		pub := &rsa.PublicKey{N: n, E: int(e.Int64())}
		if key, err = NewPublicKey(AlgRS256, pub); err != nil {
			return nil, fmt.Errorf("jwk: %w", err)
		}
	default:
		return nil, fmt.Errorf("jwk: kty %q: %w", kty, ErrUnsupportedAlg)
	}
	if kidSet {
		if kid == "" {
			return nil, fmt.Errorf("jwk: empty kid: %w", ErrMalformed)
		}
		key = key.withID(kid)
	}
	return key, nil
}

// fixedB64 decodes a base64url member that must be exactly size octets
// (RFC 7518 §6.2.1.2: EC coordinates are always full length).
func fixedB64(m map[string]json.RawMessage, name string, size int) ([]byte, error) {
	s, ok, err := stringMember(m, name)
	if err != nil {
		return nil, fmt.Errorf("jwk: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("jwk: no %q: %w", name, ErrMalformed)
	}
	if len(s) != b64.EncodedLen(size) {
		return nil, fmt.Errorf("jwk: %q is not %d octets: %w", name, size, ErrMalformed)
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("jwk: %q encoding: %w", name, ErrMalformed)
	}
	return b, nil
}

// canonicalB64Int decodes a base64urlUInt (RFC 7518 §2): non-empty, no
// leading zero octet, at most maxLen octets.
func canonicalB64Int(m map[string]json.RawMessage, name string, maxLen int) (*big.Int, error) {
	s, ok, err := stringMember(m, name)
	if err != nil {
		return nil, fmt.Errorf("jwk: %w", err)
	}
	if !ok || s == "" {
		return nil, fmt.Errorf("jwk: no %q: %w", name, ErrMalformed)
	}
	if len(s) > b64.EncodedLen(maxLen) {
		return nil, fmt.Errorf("jwk: %q too long: %w", name, ErrInvalidKey)
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("jwk: %q encoding: %w", name, ErrMalformed)
	}
	if len(b) == 0 || b[0] == 0 {
		return nil, fmt.Errorf("jwk: %q not canonical: %w", name, ErrMalformed)
	}
	return new(big.Int).SetBytes(b), nil
}

// ParseJWKS parses a JWK Set strictly: one JSON object with a "keys" array of
// at most 64 members. Members with "use":"enc" or a kty/crv we do not support
// are skipped (RFC 7517 §5: a client's set may hold other keys); every other
// member must parse with ParseJWK's rules or the whole set is rejected.
// Kids must be unique. The result resolves keys by kid (see Keys.ResolveKey).
func ParseJWKS(data []byte) (Keys, error) {
	if len(data) > maxJWKSSize {
		return nil, fmt.Errorf("jwks: %d octets: %w", len(data), ErrMalformed)
	}
	m, err := parseObject(data)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	raw, ok := m["keys"]
	if !ok || len(raw) == 0 || raw[0] != '[' {
		return nil, fmt.Errorf("jwks: no keys array: %w", ErrMalformed)
	}
	var members []json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, fmt.Errorf("jwks: keys: %v: %w", err, ErrMalformed)
	}
	if len(members) > maxJWKSKeys {
		return nil, fmt.Errorf("jwks: %d keys: %w", len(members), ErrMalformed)
	}
	keys := make(Keys, 0, len(members))
	seen := make(map[string]bool, len(members))
	for i, raw := range members {
		jm, err := parseObject(raw)
		if err != nil {
			return nil, fmt.Errorf("jwks: key %d: %w", i, err)
		}
		if use, _, err := stringMember(jm, "use"); err != nil {
			return nil, fmt.Errorf("jwks: key %d: %w", i, err)
		} else if use == "enc" {
			continue
		}
		k, err := jwkFromMembers(jm)
		if errors.Is(err, ErrUnsupportedAlg) {
			continue // a key type or curve we do not speak (RFC 7517 §5)
		}
		if err != nil {
			return nil, fmt.Errorf("jwks: key %d: %w", i, err)
		}
		if seen[k.id] {
			return nil, fmt.Errorf("jwks: duplicate kid %q: %w", k.id, ErrMalformed)
		}
		seen[k.id] = true
		keys = append(keys, k)
	}
	return keys, nil
}

// Keys is a fixed list of verification keys (e.g. a client's JWKS).
type Keys []*Key

var _ KeyResolver = Keys(nil)

// ResolveKey returns the key with this kid; ErrUnknownKey when none, and
// ErrAlgMismatch when it is bound to another algorithm. An empty kid
// resolves only when exactly one key of alg exists.
func (ks Keys) ResolveKey(kid, alg string) (*Key, error) {
	if kid == "" {
		var found *Key
		for _, k := range ks {
			if k.alg == alg {
				if found != nil {
					return nil, fmt.Errorf("no kid and several %s keys: %w", alg, ErrUnknownKey)
				}
				found = k
			}
		}
		if found == nil {
			return nil, fmt.Errorf("no %s key: %w", alg, ErrUnknownKey)
		}
		return found, nil
	}
	for _, k := range ks {
		if k.id == kid {
			if k.alg != alg {
				return nil, fmt.Errorf("kid %q is %s, not %s: %w", kid, k.alg, alg, ErrAlgMismatch)
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("kid %q: %w", kid, ErrUnknownKey)
}

// JWKS returns the public JWK Set of the keys.
func (ks Keys) JWKS() JWKS {
	out := JWKS{Keys: make([]JWK, 0, len(ks))}
	for _, k := range ks {
		out.Keys = append(out.Keys, k.PublicJWK())
	}
	return out
}
