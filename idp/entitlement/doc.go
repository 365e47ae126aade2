// Package entitlement is the online eligibility verification of pension
// beneficiaries (待遇资格认证, issue 7, DESIGN.md §8).
//
// It owns:
//   - the cycle rules (cycle.go): pure functions of a certification instant
//     and a clock, in China Standard Time (Asia/Shanghai, UTC+8 without DST
//     since 1991): a certification is valid through the end of the 12th month
//     after the month it happened; certified → due (last 60 days) →
//     suspended (from month 13) → certified again on the next pass;
//     terminated (death, emigration) is final;
//   - the Service: agencies register, update and remove beneficiaries, read
//     status singly, in batches and as a due list, read their ordered event
//     feed; holders certify (face level only, live card, liveness verified);
//     card cancellations from the registry outbox terminate beneficiaries
//     through a durable cursor; a sweeper turns the passage of time into
//     due/suspended events;
//   - attestations: essc-eligibility+jwt JWS (SM2SM3 for gm-profile agencies,
//     ES256 for intl) with a pairwise subject per agency sector, and their
//     verification;
//   - the Handler mounting /entitlement/v1/... (bearer tokens with scope
//     essc.entitlement.manage through the small Authenticator interface);
//   - the Dispatcher delivering signed webhooks from the durable feed (leased
//     per agency, retries with backoff, idempotency key = event id,
//     dead-letter after N attempts, redelivery on demand) and running the
//     sweeper and the termination consumer.
//
// It must not import its parent idp, any cmd package or a concrete storage
// backend (tests may open storage/sql). It may import idp/card (SSN parsing),
// signing and storage.
package entitlement
