// Package secret hashes and compares OAuth client secrets with HMAC-SM3 under
// a server-held key (DESIGN.md §5: client_secret_basic for intl clients).
//
// A client secret is a high-entropy random string chosen by the server, so a
// keyed hash is enough and keeps the token endpoint fast (no bcrypt on the hot
// path). The admin API stores Hash(key, secret) in storage.Client.SecretHash;
// the provider compares with Equal in constant time.
//
// It imports only the standard library and github.com/emmansun/gmsm; it never
// imports idp (its parent) so idp/admin can use it too.
package secret
