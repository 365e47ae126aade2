// Package redisstore implements storage.Sessions on Redis through
// go-redis's redis.UniversalClient (single node, Sentinel or Cluster). The
// package is named redisstore (directory storage/redis) so that it does not
// shadow go-redis's package name.
//
// Layout: every key starts with Config.Prefix and carries a hash tag
// ("{...}") around its hashed part, so every Lua script touches exactly one
// key (one slot) and runs unchanged on Cluster. Raw codes, token signatures,
// request URIs, jtis and session ids are never keys: they are SHA-256 hashed
// (storage.HashKey). Every key has a TTL; expiry decisions additionally use
// the injected clock (the expiry is stored in the value), so the store agrees
// with storage/memory under the conformance suite. Single-use operations
// (code invalidation, QR transitions and redemption, jti, replay, once-blobs,
// refresh rotation) are one Lua script or one conditional SET each, hence
// atomic. An authorization code and its PKCE and OIDC records share one key
// (codes.go); a storage.Batch reads it once per request. Wake-ups of QR
// transactions use one Redis pub/sub channel per transaction, multiplexed
// over a single subscription connection per Store.
//
// Errors: redis.Nil becomes storage.ErrNotFound; connection refused,
// timeouts, a closed client or pool exhaustion become storage.ErrUnavailable
// (callers answer 503); Redis error replies are returned as plain errors.
//
// It imports only the standard library, go-redis, fosite and storage.
package redisstore
