// Package idp is the OpenID provider of essc: the fosite composition (one
// fosite provider per issuer profile), discovery, JWKS, authorize (+PAR),
// token, revocation, introspection, userinfo, logout and back-channel logout
// (DESIGN.md §4, §5, §9; issue 5).
//
// Two profiles are served by one Provider: "intl" at {base} (ES256 access and
// ID tokens, RS256 keys published for rotation; works with unmodified go-oidc)
// and "gm" at {base}/gm (SM2SM3 only). Every client is registered for exactly
// one profile; the other profile's endpoints do not know it.
//
// The package declares the small interfaces it consumes (ports.go):
// KeySource (signing.KeySet), ClientSource (storage.Registry), SessionStore
// (storage.Sessions), HolderDirectory (live card/e-card status + claims),
// ReplayCache, ConsentStore, LoginStep (the QR login of issue 6 plugs in
// here) and EventSource (the registry outbox). It maps every domain and
// storage error to an OAuth error in one place (errors.go).
//
// Imports: fosite, signing, storage (contracts only), idp/secret. It must not
// import cmd/*, the concrete storage backends (storage/memory, storage/redis,
// storage/sql), qrlogin, or any idp/* child that imports idp.
package idp
