package idp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/emmansun/gmsm/sm3"
	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"

	"github.com/essc-project/essc/signing"
)

// joseSigner is fosite's jwt.Signer over the signing package for one
// algorithm. It signs with keys.Active(alg) and verifies only tokens of alg
// whose kid resolves in keys (active or retired): an SM2SM3 token never
// verifies on the intl profile and vice versa; alg none never verifies.
type joseSigner struct {
	keys KeySource
	alg  string   // signs with this alg
	also []string // verifies these algs as well (ID token hints of clients with their own alg)
}

var _ jwt.Signer = (*joseSigner)(nil)

// Generate signs claims; header members other than alg/kid/crit are kept
// (typ defaults to JWT). It returns the token and its signature part.
func (s *joseSigner) Generate(_ context.Context, claims jwt.MapClaims, header jwt.Mapper) (string, string, error) {
	key, err := s.keys.Active(s.alg)
	if err != nil {
		return "", "", fmt.Errorf("active %s key: %w", s.alg, err)
	}
	hdr := map[string]any{"typ": "JWT"}
	if header != nil {
		for k, v := range header.ToMap() {
			switch k {
			case "alg", "kid", "crit", "jku", "jwk", "x5u", "x5c":
				continue
			}
			hdr[k] = v
		}
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", "", err
	}
	tok, err := signing.Sign(key, hdr, payload)
	if err != nil {
		return "", "", err
	}
	return tok, tok[strings.LastIndexByte(tok, '.')+1:], nil
}

// verify checks the signature with the profile's keys and alg.
func (s *joseSigner) verify(token string) (signing.Header, []byte, error) {
	h, payload, err := signing.Verify(token, s.keys)
	if err != nil {
		return h, nil, err
	}
	if h.Alg != s.alg && !slices.Contains(s.also, h.Alg) {
		return h, nil, fmt.Errorf("token alg %q on a %s profile: %w", h.Alg, s.alg, signing.ErrAlgMismatch)
	}
	return h, payload, nil
}

// Validate verifies the signature (not the claims) and returns the signature part.
func (s *joseSigner) Validate(_ context.Context, token string) (string, error) {
	if _, _, err := s.verify(token); err != nil {
		return "", fosite.ErrTokenSignatureMismatch.WithWrap(err).WithDebug(err.Error())
	}
	return token[strings.LastIndexByte(token, '.')+1:], nil
}

// Decode verifies the signature and returns the claims; fosite then checks
// exp/iat/nbf through Claims.Valid. Integer claims decode as json.Number.
func (s *joseSigner) Decode(_ context.Context, token string) (*jwt.Token, error) {
	h, payload, err := s.verify(token)
	if err != nil {
		ve := &jwt.ValidationError{Inner: err, Errors: jwt.ValidationErrorSignatureInvalid}
		if errors.Is(err, signing.ErrMalformed) {
			ve.Errors = jwt.ValidationErrorMalformed
		}
		return nil, ve
	}
	claims := jwt.MapClaims{}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return nil, &jwt.ValidationError{Inner: err, Errors: jwt.ValidationErrorMalformed}
	}
	hdr := map[string]any{}
	if err := json.Unmarshal(h.Raw, &hdr); err != nil {
		return nil, &jwt.ValidationError{Inner: err, Errors: jwt.ValidationErrorMalformed}
	}
	return &jwt.Token{Header: hdr, Claims: claims, Method: jose.SignatureAlgorithm(h.Alg)}, nil
}

// GetSignature returns the signature part of a compact JWS.
func (s *joseSigner) GetSignature(_ context.Context, token string) (string, error) {
	if strings.Count(token, ".") != 2 {
		return "", fosite.ErrInvalidTokenFormat
	}
	return token[strings.LastIndexByte(token, '.')+1:], nil
}

// Hash is the profile's hash: SM3 for SM2SM3, SHA-256 otherwise.
func (s *joseSigner) Hash(_ context.Context, in []byte) ([]byte, error) {
	if s.alg == signing.AlgSM2SM3 {
		sum := sm3.Sum(in)
		return sum[:], nil
	}
	sum := sha256.Sum256(in)
	return sum[:], nil
}

// GetSigningMethodLength is the hash size in bytes (32 for all our algs).
func (s *joseSigner) GetSigningMethodLength(context.Context) int { return 32 }
