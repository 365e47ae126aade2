// Package signing implements the JOSE signing profile of essc: SM2SM3 (SM2 over
// SM3, GM/T 0009 default user ID, R‖S signatures), ES256 and RS256; keys, JWK/JWKS and rotation.
//
// It imports only the standard library, the SM crypto library and golang-jwt. No HTTP, no storage.
package signing
