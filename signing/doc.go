// Package signing implements the JOSE signing profile of essc (DESIGN.md §4,
// docs/PROTOCOL.md): SM2SM3 (SM2 over SM3 with the GM/T 0009 default user ID
// 1234567812345678, 64-octet R‖S signatures), ES256 and RS256.
//
// It owns:
//   - Key: one key bound to exactly one algorithm, with an RFC 7638
//     thumbprint kid; the private half is only a crypto.Signer (NewKey states
//     the contract a hardware backend must meet, to be added behind a build tag).
//   - Compact JWS: Sign, SignClaims and the strict Verify (typed sentinel
//     errors; a kid never verifies under another algorithm; alg "none" and
//     unknown algorithms rejected), HalfHash for at_hash / c_hash.
//   - JWK / JWKS ({"kty":"EC","crv":"SM2"} for SM2), PKCS #8 PEM (plain, or
//     PBES2 with SM4-CBC + PBKDF2-HMAC-SM3 for SM2 keys).
//   - KeySet: rotation pending → active → retired → removed driven by an
//     injected clock; KeyDir: a directory of key files and their schedule.
//   - SigningMethodSM2SM3 for github.com/golang-jwt/jwt/v5 (RegisterJWT).
//
// It imports only the standard library, github.com/emmansun/gmsm,
// github.com/golang-jwt/jwt/v5 and golang.org/x/crypto: no HTTP, no fosite,
// no storage, nothing else of essc (enforced by .ci/imports.sh).
// github.com/tjfoc/gmsm is a test-only interoperability oracle.
package signing
