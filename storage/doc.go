// Package storage holds the contracts of essc's state and their sentinel
// errors (errors.go; ErrNotFound is fosite.ErrNotFound).
//
// Two halves live here:
//   - Session state (sessions.go, codec.go): short-lived, TTL'd, hot state —
//     fosite requests, codes and tokens, PKCE, OIDC and PAR sessions, QR
//     transactions, browser SSO sessions, replay caches, rate limits and
//     single-use blobs. Contract Sessions; backends storage/memory and
//     storage/redis; conformance suite storage/storagetest.
//   - The durable registry (registry*.go): holders, cards, e-cards, devices,
//     clients, delegations, outbox and audit chain. Backend storage/sql;
//     conformance suite storage/registrytest.
//
// This package imports only the standard library and fosite; it never
// imports a backend (storage/...), idp, qrlogin or cmd. Only cmd/* imports a
// concrete backend.
package storage
