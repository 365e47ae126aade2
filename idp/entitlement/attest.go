package entitlement

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/sm3"

	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
)

// AttestationType is the JWS typ of an eligibility attestation.
const AttestationType = "essc-eligibility+jwt"

// Act names the delegate of a family-assisted certification (RFC 8693 §4.1
// style): Sub is the delegate's pairwise subject at the same sector.
type Act struct {
	Sub string `json:"sub"`
}

// AttestationClaims are the claims of an essc-eligibility+jwt. Times are
// Unix seconds. Exp equals ValidUntil, so a generic JWT library also stops
// accepting the attestation when the certification lapses.
type AttestationClaims struct {
	Iss           string `json:"iss"`
	Sub           string `json:"sub"` // pairwise for the agency's sector
	Aud           string `json:"aud"` // the agency client id
	IAT           int64  `json:"iat"`
	Exp           int64  `json:"exp"`
	JTI           string `json:"jti"`
	BeneficiaryID string `json:"beneficiary_id"`
	Benefit       string `json:"benefit"`
	CertifiedAt   int64  `json:"certified_at"`
	Method        string `json:"method"`
	Act           *Act   `json:"act,omitempty"`
	ValidUntil    int64  `json:"valid_until"`
}

// PairwiseSubject is HMAC-SM3(key, len(sector) ‖ sector ‖ holderID),
// base64url — byte-for-byte the OIDC provider's pairwise subject (the same
// holder has the same sub at a sector in ID tokens and attestations; the
// parent package idp cannot be imported here, a test pins the equality).
func PairwiseSubject(key []byte, sector, holderID string) string {
	m := hmac.New(sm3.New, key)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(sector)))
	m.Write(n[:])
	m.Write([]byte(sector))
	m.Write([]byte(holderID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// algFor is the attestation algorithm of an agency's profile.
func algFor(profile string) string {
	if profile == storage.ProfileGM {
		return signing.AlgSM2SM3
	}
	return signing.AlgES256
}

func newJTI() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// signAttestation signs c with the active key of alg.
func signAttestation(keys KeySource, alg string, c AttestationClaims) (string, error) {
	k, err := keys.Active(alg)
	if err != nil {
		return "", fmt.Errorf("entitlement: attestation key: %w", err)
	}
	return signing.SignClaims(k, AttestationType, c)
}

// VerifyAttestation checks an attestation offline: a valid JWS by one of
// keys (the published JWKS of the agency's profile), typ
// essc-eligibility+jwt, audience aud (skipped when aud is ""), and not
// expired at now. It returns the claims; errors wrap ErrInvalidAttestation
// (or the signing sentinels it wraps in turn).
func VerifyAttestation(token string, keys signing.KeyResolver, aud string, now time.Time) (AttestationClaims, error) {
	var c AttestationClaims
	hdr, payload, err := signing.Verify(token, keys)
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalidAttestation, err)
	}
	if hdr.Typ != AttestationType {
		return c, fmt.Errorf("%w: typ %q", ErrInvalidAttestation, hdr.Typ)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return AttestationClaims{}, fmt.Errorf("%w: claims", ErrInvalidAttestation)
	}
	switch {
	case c.Sub == "" || c.JTI == "" || c.Benefit == "" || c.ValidUntil == 0 || c.CertifiedAt == 0:
		return AttestationClaims{}, fmt.Errorf("%w: missing claim", ErrInvalidAttestation)
	case aud != "" && c.Aud != aud:
		return AttestationClaims{}, fmt.Errorf("%w: audience", ErrInvalidAttestation)
	case !now.Before(time.Unix(c.Exp, 0)):
		return AttestationClaims{}, fmt.Errorf("%w: expired", ErrInvalidAttestation)
	}
	return c, nil
}
