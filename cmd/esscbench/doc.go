// Command esscbench is essc's bounded load generator (issue 9). It drives a
// running esscd on loopback — or one it spawns itself (--spawn) — through
// real HTTP with keep-alive, and reports per scenario: operations and
// requests per second, p50/p90/p99/max per step, errors by kind, server CPU
// seconds per operation (delta of process_cpu_seconds_total on /metrics),
// Redis commands and Redis CPU per operation (INFO commandstats and INFO cpu
// deltas, with --redis-addr), PostgreSQL's CPU per operation (its
// postmaster's and backends' /proc times: with --spawn-database on this
// machine, as a user who may read them), the server's RSS, and the load
// tool's own CPU per operation (getrusage: the load shares the machine, so
// the four processes' CPU together bounds throughput; a "cpu" line under
// the table adds them up and gives the rate the machine's CPUs allow).
// Under the table, each scenario whose cryptography is all SM2 (qr-login,
// qr-login-sse, client_credentials_gm) gets a floor line: its SM2 operations
// at the reference's CPU (issue 9's cryptographic floor), the server CPU as
// a multiple of it, and — when http-floor ran too — the floor plus its
// requests' cost before any handler work. Results are printed as a table and written as JSON
// and as an SVG chart (throughput and p99 per scenario).
//
// By default each worker starts its next operation as soon as the last one
// ends (closed loop: the figures are at saturation). With --rate R the
// operations start at R per second instead (open loop); an operation that
// finds every worker busy waits, and its latency counts from its scheduled
// start, so queueing behind a slow server is measured rather than hidden.
//
// Every run also times a fixed reference in-process (raw SM2 sign and
// verify with github.com/emmansun/gmsm), so results carry ratios to the
// machine's cryptographic speed measured in the same run; `esscbench check`
// compares those ratios with a committed baseline (testdata/bench-baseline.json)
// and fails on a regression beyond the tolerance. Absolute times are never
// compared.
//
// Scenarios (each operation is every HTTP request of one user action):
//
//	client_credentials_gm    gm client, private_key_jwt (SM2SM3 assertion) → SM2SM3 JWT access token
//	client_credentials_intl  intl client, client_secret_basic → ES256 JWT access token
//	introspect               RFC 7662 introspection of the caller's own token
//	qr-login                 full QR login: simulated browser (authorize+PKCE: the QR page with
//	                         its first frames, status, complete) and simulated app (SM2
//	                         device-key proofs, scan, PIN confirm), code exchange with an
//	                         SM2SM3 assertion, userinfo. The scan comes within the seconds
//	                         the page's frames cover, so there is no /frame request (a page
//	                         left open asks once per five frames); the browser polls once
//	                         after the scan to learn the number
//	qr-login-sse             the same login with the browser following the transaction over the
//	                         page's server-sent-events stream, as login.js does (steps watch,
//	                         scanned, approved instead of status)
//	refresh                  refresh-token rotation (each worker logs in once by QR first)
//	entitlement-batch        POST /entitlement/v1/status with --batch SSNs of registered beneficiaries
//	presentation-code        app issues a 展码 and a counter client redeems it
//	http-floor               GET /healthz: what one request costs the server before any
//	                         handler work (the HTTP share of every other scenario)
//
// The tool refuses any target that is not a loopback address: it is a
// measuring instrument, never a way to load someone else's server. Load is
// bounded: a request count or a duration, a worker cap, a total cap.
//
// It imports the wallet client (idp/wallet/client) and signing to act as the
// app and the relying parties; it must not import the server's internals
// (cmd/esscd, storage backends): everything goes over HTTP.
package main
