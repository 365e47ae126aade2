package storage

// The entitlement contract (issue 7, DESIGN.md §8): beneficiaries registered
// by pension agencies, their eligibility cycle, the per-agency ordered event
// feed and the webhook delivery state. It is a separate interface from
// Registry so the registry's backends and suite stay untouched; storage/sql
// implements both on one database. The cycle rules themselves live in
// idp/entitlement; the store persists what the domain computed, atomically.
//
// Errors: ErrNotFound (no such beneficiary for that agency — another agency's
// beneficiary is indistinguishable from a missing one), ErrDuplicate (the
// agency already registered that SSN for that benefit), ErrConflict (the
// stored Version moved), ErrInvalidRecord, ErrUnavailable, and
// ErrWebhookLeaseLost.

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// ErrWebhookLeaseLost is returned by the webhook Ack/Fail methods when the
// caller no longer holds the agency's delivery lease (it expired and another
// dispatcher took it). The caller must stop delivering for that agency.
var ErrWebhookLeaseLost = errors.New("storage: webhook lease lost")

// EntitlementStatus is the stored cycle status (DESIGN.md §8).
type EntitlementStatus string

// Entitlement statuses.
const (
	EntitlementCertified  EntitlementStatus = "certified"
	EntitlementDue        EntitlementStatus = "due"
	EntitlementSuspended  EntitlementStatus = "suspended"
	EntitlementTerminated EntitlementStatus = "terminated"
)

// Beneficiary is one benefit of one person registered by one agency.
type Beneficiary struct {
	ID       string
	AgencyID string // the agency client's id; every read is scoped by it
	// SSN is the plaintext social security number: input of
	// CreateBeneficiary, echoed by BeneficiariesBySSN; never stored (the store
	// keeps an HMAC-SM3 blind index and the masked form).
	SSN       string
	SSNMasked string
	HolderID  string // the registry holder once known; "" before
	Benefit   string // e.g. enterprise_pension
	Anchor    time.Time
	Status    EntitlementStatus
	// CertifiedAt is the last certification (the anchor until the first one);
	// DueFrom and ValidUntil are the cycle boundaries derived from it.
	CertifiedAt time.Time
	DueFrom     time.Time
	ValidUntil  time.Time
	Method      string // method of the last certification ("" for the anchor)
	Act         string // delegate of the last certification, "" if the holder
	// Attestation is the last attestation JWT issued for this beneficiary.
	// Only the point read Beneficiary fills it (list reads leave it empty to
	// stay narrow); writes store it when non-empty and never clear it.
	Attestation       string
	TerminatedAt      time.Time
	TerminationReason string
	Version           int64
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// EntitlementEvent is one entry of an agency's ordered feed. Seq is global
// and strictly increasing in commit order, so a reader resuming after its
// last Seq never skips an event committed later.
type EntitlementEvent struct {
	Seq           int64
	AgencyID      string
	BeneficiaryID string
	Type          string          // e.g. "beneficiary.certified"
	Payload       json.RawMessage // JSON object
	At            time.Time
}

// WebhookTarget is an agency whose webhook cursor is behind its feed, leased
// to one dispatcher until LeaseUntil.
type WebhookTarget struct {
	AgencyID string
	Cursor   int64 // last acknowledged (or dead-lettered) Seq
	Attempts int   // failed attempts of the event after Cursor
}

// WebhookDeadLetter is an event given up after the maximum attempts.
type WebhookDeadLetter struct {
	AgencyID  string
	Seq       int64
	Attempts  int
	LastError string
	At        time.Time
}

// Entitlements is the durable entitlement store. Implementations are safe for
// concurrent use by many goroutines and replicas sharing one database.
type Entitlements interface {
	EntitlementReader

	// EntitlementTx runs fn in ONE transaction (same rules as Registry.Tx):
	// every beneficiary change and the events describing it commit together.
	EntitlementTx(ctx context.Context, fn func(tx EntitlementTx) error) error

	// BeneficiariesBySSN is the batch read: the agency's beneficiaries whose
	// SSN is in ssns (any benefit), each with SSN set to the matching input.
	// Unknown SSNs are simply absent. Designed for ≥ 10,000 SSNs per call
	// (one or a few indexed queries, not one per SSN).
	BeneficiariesBySSN(ctx context.Context, agencyID string, ssns []string) ([]Beneficiary, error)
	// BeneficiariesValidUntil pages the agency's non-terminated beneficiaries
	// whose ValidUntil is in [from, to), ordered by (ValidUntil, ID), after the
	// id afterID ("" for the first page).
	BeneficiariesValidUntil(ctx context.Context, agencyID string, from, to time.Time, afterID string, limit int) ([]Beneficiary, error)
	// BeneficiariesToSweep returns up to limit non-terminated beneficiaries
	// whose stored status is behind the clock at now: certified with DueFrom
	// ≤ now, or certified/due with ValidUntil ≤ now.
	BeneficiariesToSweep(ctx context.Context, now time.Time, limit int) ([]Beneficiary, error)
	// EntitlementEvents returns up to limit events of the agency with
	// Seq > afterSeq in Seq order.
	EntitlementEvents(ctx context.Context, agencyID string, afterSeq int64, limit int) ([]EntitlementEvent, error)

	// ClaimWebhookTargets leases up to limit agencies that have events after
	// their webhook cursor, whose retry time has come and whose lease is free
	// or expired, to owner until now+lease.
	ClaimWebhookTargets(ctx context.Context, owner string, lease time.Duration, limit int) ([]WebhookTarget, error)
	// AckWebhook moves the agency's cursor to seq (delivered), resets the
	// attempt count and keeps the lease. ErrWebhookLeaseLost if owner lost it.
	AckWebhook(ctx context.Context, agencyID, owner string, seq int64) error
	// FailWebhook records a failed attempt of the event seq: attempts+1 and the
	// next try at retryAt. When attempts reaches maxAttempts the event is
	// dead-lettered and the cursor moves past it. Reports whether it was
	// dead-lettered. The lease is released. ErrWebhookLeaseLost as for Ack.
	FailWebhook(ctx context.Context, agencyID, owner string, seq int64, errText string, retryAt time.Time, maxAttempts int) (dead bool, err error)
	// ReleaseWebhook gives the lease up (delivery paused until retryAt).
	ReleaseWebhook(ctx context.Context, agencyID, owner string, retryAt time.Time) error
	// WebhookDeadLetters lists the agency's dead letters with Seq > afterSeq.
	WebhookDeadLetters(ctx context.Context, agencyID string, afterSeq int64, limit int) ([]WebhookDeadLetter, error)
	// RedeliverWebhooks rewinds the agency's cursor so every event with
	// Seq ≥ fromSeq is delivered again (same idempotency keys) and clears
	// their dead letters. A cursor already before fromSeq is unchanged.
	RedeliverWebhooks(ctx context.Context, agencyID string, fromSeq int64) error
}

// EntitlementReader holds the point reads (on the store and inside a
// transaction, seeing its writes).
type EntitlementReader interface {
	// Beneficiary returns the agency's beneficiary id; ErrNotFound for another
	// agency's id.
	Beneficiary(ctx context.Context, agencyID, id string) (Beneficiary, error)
	// BeneficiariesOfSSN returns every agency's beneficiaries of ssn (the
	// certification and termination fan-out), oldest first.
	BeneficiariesOfSSN(ctx context.Context, ssn string) ([]Beneficiary, error)
}

// EntitlementTx is the write side, used inside EntitlementTx.
type EntitlementTx interface {
	EntitlementReader
	// CreateBeneficiary inserts b with Version 1 (empty ID assigned) and
	// registers the agency for webhook delivery. b.SSN is blind-indexed and
	// masked; ErrDuplicate for the same (agency, SSN, benefit).
	CreateBeneficiary(ctx context.Context, b Beneficiary) (Beneficiary, error)
	// UpdateBeneficiary writes every mutable field (benefit, anchor, status,
	// cycle dates, method, act, attestation, termination, holder id) if the
	// stored version equals b.Version; returns b with Version+1.
	// ErrConflict / ErrNotFound.
	UpdateBeneficiary(ctx context.Context, b Beneficiary) (Beneficiary, error)
	// DeleteBeneficiary removes the agency's beneficiary (its events stay in
	// the feed). ErrNotFound if absent or another agency's.
	DeleteBeneficiary(ctx context.Context, agencyID, id string) error
	// AppendEntitlementEvent appends e to the agency's feed (Seq and At set).
	AppendEntitlementEvent(ctx context.Context, e EntitlementEvent) (EntitlementEvent, error)
}
