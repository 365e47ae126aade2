// Package sql is the durable registry (storage.Registry) on PostgreSQL
// (github.com/jackc/pgx/v5 through its database/sql adapter; COPY through the
// native connection) and SQLite (modernc.org/sqlite, pure Go, WAL, BEGIN
// IMMEDIATE). One schema, embedded numbered migrations (migrations/NNNN_*.sql,
// dialect tokens only where the engines differ), applied by Open and by
// `esscctl migrate`.
//
// It owns: the SQL schema and queries, the mapping of driver errors to the
// storage sentinels, SM4-GCM encryption of social security numbers with an
// HMAC-SM3 blind index, the audit chain's storage, and the registry key
// directory (LoadOrCreateSecrets).
//
// Consistency rules: optimistic concurrency (version columns) for cards,
// e-cards and clients; one live e-card per card by a partial unique index; PIN
// counters as single conditional UPDATE … RETURNING statements; outbox
// sequence numbers and audit appends serialised through a locked counter/head
// row so they become visible in commit order and the chain never forks.
//
// It must not import idp, qrlogin, cmd or another storage backend; only cmd
// wires it (DESIGN.md §2).
package sql
