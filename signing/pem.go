package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/pem"
	"fmt"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs8"
	"github.com/emmansun/gmsm/sm2"
)

// PEM block types of MarshalPKCS8PEM.
const (
	pemPrivate   = "PRIVATE KEY"
	pemEncrypted = "ENCRYPTED PRIVATE KEY"
)

// PBKDF2Iterations is the PBKDF2 iteration count of encrypted key files.
const PBKDF2Iterations = 100_000

// encrypterFor chooses PBES2 parameters (RFC 8018 §6.2, OID 1.2.840.113549.1.5.13,
// PBKDF2 OID 1.2.840.113549.1.5.12): SM4-CBC with PBKDF2-HMAC-SM3 (PRF
// 1.2.156.10197.1.401.2) for SM2 keys (DESIGN.md §4), AES-256-CBC with
// PBKDF2-HMAC-SHA256 for P-256 and RSA keys. Both are readable by OpenSSL 3.
func encrypterFor(alg string) pkcs.PBESEncrypter {
	if alg == AlgSM2SM3 {
		return pkcs.NewPBESEncrypter(pkcs.SM4CBC, pkcs.NewPBKDF2Opts(pkcs.SM3, 16, PBKDF2Iterations))
	}
	return pkcs.NewPBESEncrypter(pkcs.AES256CBC, pkcs.NewPBKDF2Opts(pkcs.SHA256, 16, PBKDF2Iterations))
}

// MarshalPKCS8PEM encodes the private half of key as PKCS #8 PEM: a plain
// "PRIVATE KEY" block when password is empty, else an "ENCRYPTED PRIVATE KEY"
// block (PBES2, see encrypterFor). SM2 keys carry the namedCurve
// 1.2.156.10197.1.301. Keys whose signer is not a software key (an HSM) fail
// with ErrInvalidKey.
func MarshalPKCS8PEM(key *Key, password []byte) ([]byte, error) {
	if key == nil || key.signer == nil {
		return nil, fmt.Errorf("pem: key has no private half: %w", ErrInvalidKey)
	}
	var priv any
	switch s := key.signer.(type) {
	case *sm2.PrivateKey, *ecdsa.PrivateKey, *rsa.PrivateKey:
		priv = s
	default:
		return nil, fmt.Errorf("pem: signer %T cannot be exported: %w", s, ErrInvalidKey)
	}
	var enc pkcs.PBESEncrypter
	typ := pemPrivate
	if len(password) > 0 {
		enc, typ = encrypterFor(key.alg), pemEncrypted
	}
	der, err := pkcs8.MarshalPrivateKey(priv, password, enc)
	if err != nil {
		return nil, fmt.Errorf("pem: %v: %w", err, ErrInvalidKey)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), nil
}

// ParsePKCS8PEM parses one PKCS #8 PEM block ("PRIVATE KEY", or "ENCRYPTED
// PRIVATE KEY" with password) into a signing Key. The algorithm follows from
// the key: SM2 curve → SM2SM3, P-256 → ES256, RSA ≥ 2048 bits → RS256.
// Trailing data after the block, a missing or wrong password, other curves
// and block types are rejected (ErrMalformed or ErrInvalidKey).
func ParsePKCS8PEM(data, password []byte) (*Key, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("pem: no PEM block: %w", ErrMalformed)
	}
	if len(trimSpace(rest)) != 0 {
		return nil, fmt.Errorf("pem: trailing data: %w", ErrMalformed)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("pem: legacy encrypted PEM headers: %w", ErrMalformed)
	}
	switch block.Type {
	case pemPrivate:
		password = nil
	case pemEncrypted:
		if len(password) == 0 {
			return nil, fmt.Errorf("pem: encrypted key needs a password: %w", ErrInvalidKey)
		}
	default:
		return nil, fmt.Errorf("pem: block type %q: %w", block.Type, ErrMalformed)
	}
	priv, _, err := pkcs8.ParsePrivateKey(block.Bytes, password)
	if err != nil {
		return nil, fmt.Errorf("pem: %v (wrong password?): %w", err, ErrInvalidKey)
	}
	var (
		alg string
		s   crypto.Signer
	)
	switch p := priv.(type) {
	case *sm2.PrivateKey:
		alg, s = AlgSM2SM3, p
	case *ecdsa.PrivateKey:
		switch {
		case isSM2Curve(p.Curve):
			alg, s = AlgSM2SM3, p
		case isP256Curve(p.Curve):
			alg, s = AlgES256, p
		default:
			return nil, fmt.Errorf("pem: curve %s: %w", p.Curve.Params().Name, ErrUnsupportedAlg)
		}
	case *rsa.PrivateKey:
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("pem: rsa: %v: %w", err, ErrInvalidKey)
		}
		alg, s = AlgRS256, p
	default:
		return nil, fmt.Errorf("pem: key type %T: %w", priv, ErrUnsupportedAlg)
	}
	return NewKey(alg, s)
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
