// Package card owns the physical social security card and e-card domain
// (DESIGN.md §1, §6): validation of social security numbers (GB 11643-1999),
// card numbers and region codes; the card and e-card state machines as
// transition tables; the PIN policy and its HMAC-SM3 verifier; the delegation
// rules (guardian, authorised agent); and Service, which performs every
// lifecycle action over storage.Registry as ONE transaction holding the state
// change, its outbox events and its audit entry.
//
// PII masking lives here and only here (MaskSSN, MaskCardNumber, MaskName);
// loggers elsewhere use these functions or the SSN type's LogValue.
//
// It must not import its parent idp, any cmd package, or a concrete storage
// backend (storage/sql, storage/redis, storage/memory); tests may open
// storage/sql.
package card
