package storage

// The durable registry contract: holders, physical cards, e-cards, device
// bindings, OAuth clients, delegations, the domain-event outbox and the
// tamper-evident audit log (DESIGN.md §3, §6). The SQL backend lives in
// storage/sql; the conformance suite in storage/registrytest. Entitlement
// records (issue 7) will be added here by that issue; nothing is reserved yet.
//
// Errors: every method wraps one of the sentinels with %w so callers test with
// errors.Is: ErrNotFound (no such record), ErrDuplicate (a unique rule was
// violated), ErrConflict (optimistic-concurrency loss: the stored version moved),
// ErrPINLocked, ErrInvalidRecord (the record breaks a storage invariant such as
// an empty key) and ErrUnavailable (the database cannot be reached: callers map
// it to 503, never to a client error).

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

var (
	// ErrConflict is returned by the Update* methods when the record's stored
	// Version is not the expected one: another writer (e.g. a second outlet)
	// changed it first. Re-read and decide again; never retry blindly.
	ErrConflict = errors.New("storage: version conflict")
	// ErrDuplicate is returned when a write would violate a unique rule: the same
	// id, card number, SSN, client id, device thumbprint, or a second live
	// (non-revoked) e-card for one card.
	ErrDuplicate = errors.New("storage: duplicate record")
	// ErrPINLocked is returned by ChargePINAttempt when the card's PIN is already
	// locked; the attempt was not charged and the PIN must not be compared.
	ErrPINLocked = errors.New("storage: pin locked")
	// ErrInvalidRecord is returned when a record breaks a storage invariant
	// (missing id or key field, unknown enum value). Domain validation is the
	// card package's job; this is only the last line of defence.
	ErrInvalidRecord = errors.New("storage: invalid record")
)

// Registry is the durable source of truth for cards, e-cards, devices and
// clients. Implementations are safe for concurrent use by many goroutines and
// many replicas sharing one database.
//
// Every multi-record change goes through Tx. The read methods of
// RegistryReader on Registry itself are single-statement fast paths outside
// any transaction (GetClient-style hot reads).
type Registry interface {
	RegistryReader
	PINCounter
	OutboxReader

	// Tx runs fn in ONE database transaction: either everything fn wrote is
	// committed or nothing is. If fn returns an error the transaction is rolled
	// back and that error is returned unchanged (wrapped errors stay
	// errors.Is-comparable). fn must not retain tx after returning and must not
	// call Tx recursively. Write transactions are serialised where the engine
	// needs it (SQLite BEGIN IMMEDIATE), so fn should be short.
	Tx(ctx context.Context, fn func(tx RegistryTx) error) error

	// AppendAudit appends one audit entry in its own transaction; shorthand for
	// Tx(ctx, func(tx) { tx.AppendAudit(...) }). Use the Tx form when the entry
	// belongs to a state change so both commit together.
	AppendAudit(ctx context.Context, e AuditEntry) (AuditEntry, error)
	// AuditEntries returns up to limit entries with Seq > afterSeq in Seq order.
	AuditEntries(ctx context.Context, afterSeq int64, limit int) ([]AuditEntry, error)
	// VerifyAudit recomputes the whole chain with the audit key and reports the
	// first modified, deleted, inserted or reordered entry. The error is only for
	// I/O failures; a broken chain is a Report with OK=false.
	VerifyAudit(ctx context.Context) (AuditReport, error)

	// ImportCards is the bulk sink of `esscctl cards import`: it inserts the
	// holders (matched by SSN blind index, created when absent) and the cards of
	// rows, in batches, idempotently: a row whose card number already exists is
	// skipped and reported in Result.Skipped, so re-running the same file is
	// harmless (resumable). Rows must already be validated by the caller. No
	// outbox events or audit entries are written per row; the caller audits the
	// import as a whole.
	ImportCards(ctx context.Context, rows []CardImport) (ImportResult, error)

	// Ping checks that the database answers (readiness probe); ErrUnavailable if not.
	Ping(ctx context.Context) error
	// Close releases the connections. Calls after Close fail.
	Close() error
}

// RegistryTx is the set of primitives the card domain composes inside one
// transaction. Reads see the transaction's own writes.
type RegistryTx interface {
	RegistryReader
	PINCounter

	// CreateHolder inserts h. h.SSN is encrypted (SM4-GCM) and blind-indexed
	// (HMAC-SM3) by the store; the plaintext is never written. An empty h.ID is
	// assigned. ErrDuplicate if the id or the SSN already exists.
	CreateHolder(ctx context.Context, h Holder) (Holder, error)
	// UpdateHolderName changes the display name (the SSN of a holder never changes).
	UpdateHolderName(ctx context.Context, id, name string) error

	// CreateCard inserts c with Version 1. An empty c.ID is assigned; zero
	// CreatedAt/UpdatedAt are set from the store clock. ErrDuplicate if the id or
	// card number exists; ErrNotFound if the holder does not exist.
	CreateCard(ctx context.Context, c Card) (Card, error)
	// UpdateCard writes Status, CancelReason, Region, IssuedOn (not the PIN
	// fields: see PINCounter and SetPIN) if and only if the stored version equals
	// c.Version; it returns the card with Version incremented and UpdatedAt set.
	// ErrConflict when the version moved, ErrNotFound when the card is gone.
	UpdateCard(ctx context.Context, c Card) (Card, error)
	// SetPIN stores a new verifier and must-change flag, clears the failure
	// counter and the lock, and stamps PIN.ChangedAt. Used by change-PIN (holder)
	// and reset-PIN (outlet, with mustChange=true).
	SetPIN(ctx context.Context, cardID string, verifier []byte, mustChange bool) error

	// CreateECard inserts e with Version 1 (empty ID assigned). ErrDuplicate when
	// the card already has a live (non-revoked) e-card: enforced by a partial
	// unique index, not only by code.
	CreateECard(ctx context.Context, e ECard) (ECard, error)
	// UpdateECard writes Status, Level and RevokedAt under the same optimistic
	// rule as UpdateCard.
	UpdateECard(ctx context.Context, e ECard) (ECard, error)

	// AddDevice binds a device key to an e-card (empty ID assigned).
	// ErrDuplicate if a live device with the same Thumbprint exists.
	AddDevice(ctx context.Context, d Device) (Device, error)
	// RevokeDevice marks the device revoked at the store clock's now.
	// Revoking an already revoked device is a no-op; ErrNotFound if unknown.
	RevokeDevice(ctx context.Context, id string) error

	// CreateClient inserts c with Version 1. ErrDuplicate if the id exists.
	CreateClient(ctx context.Context, c Client) (Client, error)
	// UpdateClient replaces every field of the client under the optimistic
	// version rule (ErrConflict / ErrNotFound).
	UpdateClient(ctx context.Context, c Client) (Client, error)

	// CreateDelegation inserts d (empty ID assigned).
	CreateDelegation(ctx context.Context, d Delegation) (Delegation, error)
	// RevokeDelegation stamps RevokedAt; a no-op if already revoked.
	RevokeDelegation(ctx context.Context, id string) error

	// AppendEvent writes a domain event to the outbox in this transaction and
	// returns it with Seq and At set. Seqs are strictly increasing in COMMIT
	// order (appends are serialised), so a consumer reading Seq > cursor never
	// skips an event that commits later.
	AppendEvent(ctx context.Context, e Event) (Event, error)
	// AdvanceCursor moves consumer's cursor to seq inside this transaction (so a
	// consumer storing its effects in the registry commits them atomically with
	// the cursor). A cursor never moves backwards: a lower seq is a no-op.
	AdvanceCursor(ctx context.Context, consumer string, seq int64) error

	// AppendAudit appends e to the audit chain in this transaction and returns
	// it with Seq, At (if zero), Prev and Chain set. Appends are serialised so
	// concurrent transactions never fork the chain.
	AppendAudit(ctx context.Context, e AuditEntry) (AuditEntry, error)
}

// RegistryReader holds the point reads, available on Registry (outside a
// transaction) and on RegistryTx (seeing the transaction's writes). Each
// returns ErrNotFound when nothing matches.
type RegistryReader interface {
	// Holder returns the holder with its SSN decrypted.
	Holder(ctx context.Context, id string) (Holder, error)
	// HolderBySSN finds a holder by its 18-character SSN through the blind
	// index (one indexed lookup; the SSN is never compared in plaintext in SQL).
	HolderBySSN(ctx context.Context, ssn string) (Holder, error)

	Card(ctx context.Context, id string) (Card, error)
	// CardByNumber is one indexed lookup by the 9-character card number.
	CardByNumber(ctx context.Context, number string) (Card, error)
	// CardsOfHolder returns every card of the holder (any status), oldest first;
	// an empty slice (not ErrNotFound) when there are none.
	CardsOfHolder(ctx context.Context, holderID string) ([]Card, error)

	ECard(ctx context.Context, id string) (ECard, error)
	// ECardWithCard returns the e-card and its card in one read: the status
	// re-check every login step, token, introspection and userinfo call makes.
	ECardWithCard(ctx context.Context, ecardID string) (ECard, Card, error)
	// ECardWithHolder is ECardWithCard with the e-card's holder, read together
	// (userinfo's identity).
	ECardWithHolder(ctx context.Context, ecardID string) (Holder, ECard, Card, error)
	// LiveECardOfCard returns the card's non-revoked e-card.
	LiveECardOfCard(ctx context.Context, cardID string) (ECard, error)
	// ECardsOfHolder returns every e-card of the holder, oldest first.
	ECardsOfHolder(ctx context.Context, holderID string) ([]ECard, error)

	Device(ctx context.Context, id string) (Device, error)
	// DeviceByThumbprint returns the live (non-revoked) device with this key thumbprint.
	DeviceByThumbprint(ctx context.Context, thumbprint string) (Device, error)
	// DeviceWithCard returns the live device with this key thumbprint with
	// its e-card and card, read together (a wallet request's authentication).
	DeviceWithCard(ctx context.Context, thumbprint string) (Device, ECard, Card, error)
	// Devices returns the e-card's devices, revoked ones included, oldest first.
	Devices(ctx context.Context, ecardID string) ([]Device, error)

	// Client is the hot read of every token request: one indexed query.
	Client(ctx context.Context, id string) (Client, error)
	// Clients lists clients ordered by ID, up to limit after the id afterID
	// ("" for the first page).
	Clients(ctx context.Context, afterID string, limit int) ([]Client, error)

	Delegation(ctx context.Context, id string) (Delegation, error)
	// DelegationsOfAgent returns the delegations granted TO agentHolderID
	// (revoked and expired included; the domain decides validity at its now).
	DelegationsOfAgent(ctx context.Context, agentHolderID string) ([]Delegation, error)
	// DelegationsOfPrincipal returns the delegations granted BY principalHolderID.
	DelegationsOfPrincipal(ctx context.Context, principalHolderID string) ([]Delegation, error)
}

// PINCounter holds the durable, replica-shared PIN failure counter. Each method
// is ONE atomic statement, usable inside or outside a transaction.
//
// Recommended verify flow (no race lets concurrent guesses exceed the limit):
//
//	ChargePINAttempt → compare verifier → on match ResetPINFailures
//
// The simpler flow "compare → RecordPINFailure on mismatch" is also offered but
// lets concurrent guesses in flight all be compared before the lock lands.
type PINCounter interface {
	// ChargePINAttempt counts one attempt BEFORE the PIN is compared: it
	// increments the failure counter and sets Locked when it reaches lockAfter,
	// unless the PIN is already locked, in which case it returns ErrPINLocked
	// and changes nothing. The returned state is after the increment.
	ChargePINAttempt(ctx context.Context, cardID string, lockAfter int) (PINCounterState, error)
	// RecordPINFailure counts one failed comparison: failures+1, locked once
	// failures ≥ lockAfter (a locked PIN stays locked). Returns the new state.
	RecordPINFailure(ctx context.Context, cardID string, lockAfter int) (failures int, locked bool, err error)
	// ResetPINFailures sets failures to 0 and unlocks (successful verification,
	// or an outlet's unlock).
	ResetPINFailures(ctx context.Context, cardID string) error
	// AcceptPIN is the fast path of a correct PIN: if the card's PIN is not
	// locked and its stored verifier equals verifier, it sets failures to 0
	// (writing only when they are not 0 already) and reports true; otherwise
	// it changes nothing and reports false, and the caller takes the charged
	// flow above. It admits no more guesses than charging first: a
	// non-matching verifier is never accepted, and the lock state is tested
	// at one instant, after every guess charged before it.
	AcceptPIN(ctx context.Context, cardID string, verifier []byte) (bool, error)
}

// PINCounterState is the counter after ChargePINAttempt.
type PINCounterState struct {
	Failures int
	Locked   bool
}

// OutboxReader is the consumer side of the outbox. Every consumer (token
// revocation, back-channel logout, entitlement termination, webhooks) reads
// every event with its own durable cursor: read Events(Cursor(name)), act
// idempotently, AdvanceCursor to the last Seq handled. Nothing is lost if a
// consumer crashes between acting and advancing; the event is re-delivered.
type OutboxReader interface {
	// Events returns up to limit events with Seq > afterSeq in Seq order.
	Events(ctx context.Context, afterSeq int64, limit int) ([]Event, error)
	// Cursor returns the consumer's last handled Seq (0 if it never advanced).
	Cursor(ctx context.Context, consumer string) (int64, error)
	// AdvanceCursor moves the cursor forward to seq (never backwards).
	AdvanceCursor(ctx context.Context, consumer string, seq int64) error
}

// Holder is a person. Its ID is stable across card replacement (pairwise
// subjects derive from it).
type Holder struct {
	ID   string
	Name string
	// SSN is the 18-character social security number in plaintext in memory
	// only; at rest it is SM4-GCM encrypted with an HMAC-SM3 blind index. The
	// store upper-cases it (check character x → X) before indexing and storing,
	// so HolderBySSN matches either case. Validation is the card domain's job.
	SSN string
	// SSNMasked is the display form 4113**********1234, stored so listing never
	// needs decryption. The store derives it from SSN when empty.
	SSNMasked string
	CreatedAt time.Time
}

// CardStatus is the physical card state (DESIGN.md §6).
type CardStatus string

// Card statuses.
const (
	CardActive    CardStatus = "active"
	CardLost      CardStatus = "lost"
	CardReplaced  CardStatus = "replaced"
	CardCancelled CardStatus = "cancelled"
)

// CancelReason qualifies CardCancelled.
type CancelReason string

// Cancel reasons; empty unless the card is cancelled.
const (
	CancelDeath      CancelReason = "death"
	CancelEmigration CancelReason = "emigration"
	CancelOther      CancelReason = "other"
)

// Card is a physical social security card.
type Card struct {
	ID       string
	HolderID string
	// Number is the 9-character card number (unique).
	Number string
	// Region is the 6-digit issuing division code.
	Region       string
	IssuedOn     time.Time // date of issue (UTC midnight)
	Status       CardStatus
	CancelReason CancelReason
	PIN          PINState
	// Version is the optimistic-concurrency token: 1 on create, +1 per UpdateCard.
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// PINState is the card's PIN verifier and counter. Only SetPIN and the
// PINCounter methods change it.
type PINState struct {
	Verifier   []byte // HMAC-SM3 verifier computed by the card domain
	MustChange bool   // initial/reset PIN: must be changed before anything is issued
	Failures   int    // consecutive failures
	Locked     bool
	ChangedAt  time.Time // zero if never set through SetPIN
}

// ECardStatus is the e-card state (DESIGN.md §6).
type ECardStatus string

// E-card statuses. At most one non-revoked e-card exists per card.
const (
	ECardActive    ECardStatus = "active"
	ECardSuspended ECardStatus = "suspended"
	ECardRevoked   ECardStatus = "revoked"
)

// ECard is the electronic card bound one-to-one to a physical card.
type ECard struct {
	ID       string
	CardID   string
	HolderID string
	Level    int // 1 identity/query, 2 bank-linked payments
	Status   ECardStatus
	Version  int64
	// RevokedAt is zero unless Status is revoked.
	RevokedAt time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Device is a device key bound to an e-card.
type Device struct {
	ID      string
	ECardID string
	// Thumbprint is the RFC 7638 thumbprint of PublicKeyJWK (computed by the
	// caller); unique among live devices.
	Thumbprint   string
	PublicKeyJWK []byte
	Channel      string // app channel name, e.g. "provincial-app"
	CreatedAt    time.Time
	RevokedAt    time.Time // zero while live
}

// Client profiles and authentication methods (DESIGN.md §4, §5).
const (
	ProfileIntl = "intl"
	ProfileGM   = "gm"

	AuthPrivateKeyJWT     = "private_key_jwt"
	AuthClientSecretBasic = "client_secret_basic"
)

// Client is a registered OAuth client (relying party, agency, outlet tool).
type Client struct {
	ID                     string
	Name                   string // registered display name shown on the phone
	Domain                 string // registered domain shown on the phone
	Profile                string // ProfileIntl | ProfileGM
	AuthMethod             string // AuthPrivateKeyJWT | AuthClientSecretBasic
	SecretHash             []byte // for client_secret_basic; never the secret
	JWKS                   []byte // raw JWK Set JSON for private_key_jwt
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	GrantTypes             []string
	Scopes                 []string
	Purposes               []string
	Sector                 string // pairwise subject sector identifier
	BackchannelLogoutURI   string
	WebhookURL             string
	RequirePAR             bool
	Disabled               bool
	Lifetimes              Lifetimes // zero fields mean the server defaults
	// IDTokenAlg is the client's id_token_signed_response_alg; empty means
	// the profile's default (ES256 on intl, SM2SM3 on gm).
	IDTokenAlg string
	Version    int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Lifetimes overrides token lifetimes per client; zero means default.
type Lifetimes struct {
	Code         time.Duration `json:"code,omitempty"`
	AccessToken  time.Duration `json:"access_token,omitempty"`
	IDToken      time.Duration `json:"id_token,omitempty"`
	RefreshToken time.Duration `json:"refresh_token,omitempty"`
}

// Delegation kinds (DESIGN.md §6). The store rejects other values
// (ErrInvalidRecord) through a CHECK constraint.
const (
	DelegationGuardian = "guardian"
	DelegationAgent    = "agent"
)

// Delegation lets AgentHolderID act for PrincipalHolderID within Scopes.
type Delegation struct {
	ID                string
	PrincipalHolderID string
	AgentHolderID     string
	Kind              string // DelegationGuardian | DelegationAgent
	Scopes            []string
	ValidFrom         time.Time
	ValidUntil        time.Time // zero: open-ended
	RevokedAt         time.Time // zero while not revoked
	CreatedAt         time.Time
}

// Event is a domain event in the outbox.
type Event struct {
	Seq       int64           // assigned by AppendEvent, strictly increasing
	Type      string          // e.g. "card.cancelled", "ecard.suspended"
	Aggregate string          // the id the event is about, e.g. a card id
	Payload   json.RawMessage // JSON object; nil is stored as {}
	At        time.Time       // assigned by the store clock
}

// AuditEntry is one tamper-evident audit log entry.
type AuditEntry struct {
	Seq     int64     // assigned, strictly increasing, no gaps on a healthy log
	At      time.Time // store clock if zero; stored with microsecond precision
	Actor   string    // who acted: client id, outlet operator, holder id
	Act     string    // on whose behalf (RFC 8693 act), empty if direct
	Action  string    // e.g. "card.report_loss"
	Target  string    // the object acted on, e.g. card id
	Details json.RawMessage
	// Prev is the previous entry's Chain (empty for the first entry); Chain is
	// AuditChain(key, Prev, entry).
	Prev  []byte
	Chain []byte
}

// AuditReport is the outcome of VerifyAudit.
type AuditReport struct {
	OK      bool
	Entries int64 // entries checked
	// FirstBad is the Seq of the first entry that fails (0 when OK); Reason
	// says how ("chain mismatch", "sequence gap", "head mismatch", ...).
	FirstBad int64
	Reason   string
}

// CardImport is one validated row of a bulk import.
type CardImport struct {
	// Line is the caller's line number, echoed back in ImportResult.Skipped.
	Line int
	// CardID is the id the card gets when inserted (the PIN verifier may be bound
	// to it); empty means the store assigns one.
	CardID      string
	SSN         string
	Name        string
	Number      string
	Region      string
	IssuedOn    time.Time
	PINVerifier []byte // initial PIN verifier; the card starts with MustChange
}

// ImportResult summarises one ImportCards call.
type ImportResult struct {
	Inserted       int   // cards inserted
	HoldersCreated int   // holders that did not exist before
	Skipped        []int // Line of each row whose card number already existed
}
