package card

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/essc-project/essc/storage"
)

// Outbox event types written by Service. Consumers (token revocation,
// back-channel logout, entitlement, webhooks) read them with their own
// cursor; every payload is a JSON object with at least "holder_id".
const (
	EventCardIssued    = "card.issued"
	EventCardLost      = "card.lost"
	EventCardUnfrozen  = "card.unfrozen"
	EventCardReplaced  = "card.replaced"
	EventCardCancelled = "card.cancelled"
	EventPINLocked     = "pin.locked"
	EventECardIssued   = "ecard.issued"
	EventECardLevel    = "ecard.level_changed"
	// EventECardSuspended, EventECardResumed and EventECardRevoked carry
	// "ecard_id", "card_id", "holder_id".
	EventECardSuspended = "ecard.suspended"
	EventECardResumed   = "ecard.resumed"
	EventECardRevoked   = "ecard.revoked"
	EventDeviceBound    = "device.bound"
	EventDeviceUnbound  = "device.unbound"
	// EventRevokeTokens asks the token store to revoke every access and
	// refresh token and QR transaction of the holder's e-card ("holder_id",
	// "ecard_id", "reason"). Written with every suspension and revocation.
	EventRevokeTokens = "tokens.revoke"
	// EventBackchannelLogout asks the session layer to end the holder's
	// browser sessions and send OIDC back-channel logout to every relying
	// party that has one ("holder_id", "reason").
	EventBackchannelLogout = "sessions.logout"
	// EventEntitlementTerminate ends the holder's benefit entitlements
	// ("holder_id", "reason": death|emigration, "date").
	EventEntitlementTerminate = "entitlement.terminate"
)

// Config configures New.
type Config struct {
	// Registry is the durable store (required).
	Registry storage.Registry
	// PINKey is the HMAC-SM3 key of PIN verifiers, at least 32 octets
	// (required). Changing it invalidates every PIN.
	PINKey []byte
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Logger receives details the callers never see (why a PIN check
	// failed); slog.Default if nil. PII is masked.
	Logger *slog.Logger
	// MaxDevices caps live device bindings per e-card; 0 means 5.
	MaxDevices int
	// LockAfter is the number of consecutive PIN failures that lock; 0 means 5.
	LockAfter int
	// OnPINLocked, if set, is called after a PIN was locked and recorded
	// (metrics).
	OnPINLocked func()
}

// Service performs the card and e-card lifecycle over a storage.Registry.
// Every action is ONE registry transaction holding the state change, the
// outbox events it causes and its audit entry, so nothing is lost between
// two steps. It is safe for concurrent use.
type Service struct {
	reg        storage.Registry
	pinKey     []byte
	now        func() time.Time
	log        *slog.Logger
	maxDevices int
	lockAfter  int
	onLocked   func()
}

// New validates cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Registry == nil {
		return nil, errors.New("card: Config.Registry is required")
	}
	if len(cfg.PINKey) < 32 {
		return nil, errors.New("card: Config.PINKey must be at least 32 octets")
	}
	s := &Service{reg: cfg.Registry, pinKey: append([]byte(nil), cfg.PINKey...), now: cfg.Now, log: cfg.Logger,
		maxDevices: cfg.MaxDevices, lockAfter: cfg.LockAfter, onLocked: cfg.OnPINLocked}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.maxDevices <= 0 {
		s.maxDevices = 5
	}
	if s.lockAfter <= 0 {
		s.lockAfter = DefaultLockAfter
	}
	return s, nil
}

// Actor is who performs an action, recorded in the audit entry. For an
// outlet it is the admin client id or operator; for a holder the holder id.
// OnBehalfOf is set when the actor acts for another holder (RFC 8693 act,
// audited as Act); such actions need a valid delegation (see Authorize).
type Actor struct {
	ID         string
	OnBehalfOf string
}

// CardRef names a card for an outlet action. Version, when non-zero, is the
// version the outlet saw: if the card changed since, the action fails with
// ErrConflict (two outlets acting on one card: exactly one wins). Zero acts
// on the current version (the CLI).
type CardRef struct {
	Number  string
	Version int64
}

// Issued is a newly issued card with its holder.
type Issued struct {
	Holder storage.Holder
	Card   storage.Card
}

// IssueRequest is a new physical card.
type IssueRequest struct {
	SSN      string
	Name     string
	Number   string
	Region   string
	IssuedOn time.Time // zero: today (China Standard Time)
}

// CheckName validates a holder name: 1–64 runes after trimming, no control
// characters, valid UTF-8. It returns the trimmed name.
func CheckName(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > 64 {
		return "", ErrInvalidName
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", ErrInvalidName
		}
	}
	return s, nil
}

// IssueCard issues a physical card with the initial PIN (MustChange). The
// holder is found by SSN or created; a holder keeps one live (active or
// lost) card at a time, so a second issue is ErrExists (use Replace). A
// known holder with a different name is ErrMismatch.
func (s *Service) IssueCard(ctx context.Context, a Actor, r IssueRequest) (Issued, error) {
	ssn, err := ParseSSN(r.SSN, s.now())
	if err != nil {
		return Issued{}, err
	}
	name, err := CheckName(r.Name)
	if err != nil {
		return Issued{}, err
	}
	number, err := ParseCardNumber(r.Number)
	if err != nil {
		return Issued{}, err
	}
	region, err := ParseRegion(r.Region)
	if err != nil {
		return Issued{}, err
	}
	issuedOn := r.IssuedOn
	if issuedOn.IsZero() {
		issuedOn = dateIn(s.now())
	}
	var out Issued
	err = s.tx(ctx, func(tx storage.RegistryTx) error {
		h, err := tx.HolderBySSN(ctx, ssn.Raw())
		switch {
		case errors.Is(err, storage.ErrNotFound):
			h, err = tx.CreateHolder(ctx, storage.Holder{ID: newID(), Name: name, SSN: ssn.Raw(), SSNMasked: MaskSSN(ssn.Raw())})
			if err != nil {
				return err
			}
		case err != nil:
			return err
		case h.Name != name:
			return fmt.Errorf("%w: name differs from the registered holder", ErrMismatch)
		default:
			cards, err := tx.CardsOfHolder(ctx, h.ID)
			if err != nil {
				return err
			}
			for _, c := range cards {
				if c.Status == storage.CardActive || c.Status == storage.CardLost {
					return fmt.Errorf("%w: the holder already has a live card (replace it)", ErrExists)
				}
			}
		}
		c, err := s.createCard(ctx, tx, h.ID, number, region, issuedOn)
		if err != nil {
			return err
		}
		out = Issued{Holder: h, Card: c}
		if err := s.event(ctx, tx, EventCardIssued, c.ID, map[string]any{"holder_id": h.ID, "card_id": c.ID, "region": region}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, ActionIssueCard, c.ID, map[string]any{"holder_id": h.ID, "number": MaskCardNumber(number), "region": region})
	})
	return out, err
}

func (s *Service) createCard(ctx context.Context, tx storage.RegistryTx, holderID, number, region string, issuedOn time.Time) (storage.Card, error) {
	id := newID()
	return tx.CreateCard(ctx, storage.Card{ID: id, HolderID: holderID, Number: number, Region: region,
		IssuedOn: issuedOn, Status: storage.CardActive,
		PIN: storage.PINState{Verifier: PINVerifier(s.pinKey, id, InitialPIN), MustChange: true}})
}

// CardView is a card with its holder and live e-card (if any) for display.
type CardView struct {
	Card   storage.Card
	Holder storage.Holder
	// ECard is the live e-card; nil when there is none.
	ECard *storage.ECard
}

// Card returns the card with this number, its holder and live e-card.
// ErrNotFound when there is no such card.
func (s *Service) Card(ctx context.Context, number string) (CardView, error) {
	n, err := ParseCardNumber(number)
	if err != nil {
		return CardView{}, err
	}
	var v CardView
	err = s.tx(ctx, func(tx storage.RegistryTx) error {
		c, err := tx.CardByNumber(ctx, n)
		if err != nil {
			return err
		}
		h, err := tx.Holder(ctx, c.HolderID)
		if err != nil {
			return err
		}
		v = CardView{Card: c, Holder: h}
		e, err := tx.LiveECardOfCard(ctx, c.ID)
		switch {
		case err == nil:
			v.ECard = &e
		case !errors.Is(err, storage.ErrNotFound):
			return err
		}
		return nil
	})
	return v, err
}

// ReportLoss moves an active card to lost and suspends its e-card; tokens
// and sessions of the holder are revoked through the outbox.
func (s *Service) ReportLoss(ctx context.Context, a Actor, ref CardRef) (storage.Card, error) {
	return s.cardAction(ctx, a, ref, ActionReportLoss, EventCardLost, "", nil)
}

// ReportLossByHolder is the online loss report (app or portal): like
// ReportLoss, but only for a card of holderID — the authenticated holder,
// or the principal when a.OnBehalfOf is set (which then needs a delegation
// covering ActionReportLoss). Another holder's card is ErrNotFound, so card
// numbers cannot be probed.
func (s *Service) ReportLossByHolder(ctx context.Context, a Actor, holderID, number string) (storage.Card, error) {
	n, err := ParseCardNumber(number)
	if err != nil {
		return storage.Card{}, err
	}
	c, err := s.reg.CardByNumber(ctx, n)
	if err != nil {
		return storage.Card{}, mapErr(err)
	}
	if c.HolderID != holderID {
		return storage.Card{}, ErrNotFound
	}
	if err := s.authorize(ctx, s.reg, a, holderID, ActionReportLoss); err != nil {
		return storage.Card{}, mapErr(err)
	}
	// The version read above pins the action to this holder's card even if
	// the number were reassigned in between.
	return s.cardAction(ctx, s.holderActor(a, holderID), CardRef{Number: n, Version: c.Version}, ActionReportLoss, EventCardLost, "", nil)
}

// Unfreeze moves a lost card back to active and resumes its e-card.
func (s *Service) Unfreeze(ctx context.Context, a Actor, ref CardRef) (storage.Card, error) {
	return s.cardAction(ctx, a, ref, ActionUnfreeze, EventCardUnfrozen, "", nil)
}

// Cancel ends an active or lost card for reason (death | emigration |
// other): the e-card is revoked, tokens revoked, back-channel logout
// requested and, for death or emigration, entitlements terminated — all
// as outbox events of the same transaction.
func (s *Service) Cancel(ctx context.Context, a Actor, ref CardRef, reason storage.CancelReason) (storage.Card, error) {
	if !ValidCancelReason(reason) {
		return storage.Card{}, fmt.Errorf("%w: cancel reason must be death, emigration or other", ErrInvalidRequest)
	}
	return s.cardAction(ctx, a, ref, ActionCancel, EventCardCancelled, reason, nil)
}

// UnlockPIN clears the failure counter and the lock (outlet only). The PIN
// itself is unchanged.
func (s *Service) UnlockPIN(ctx context.Context, a Actor, ref CardRef) (storage.Card, error) {
	return s.cardAction(ctx, a, ref, ActionUnlockPIN, "", "", func(tx storage.RegistryTx, c storage.Card) error {
		return tx.ResetPINFailures(ctx, c.ID)
	})
}

// ResetPIN sets the PIN back to the initial 123456 with MustChange and
// clears the counter (outlet only, after checking the holder's identity).
func (s *Service) ResetPIN(ctx context.Context, a Actor, ref CardRef) (storage.Card, error) {
	return s.cardAction(ctx, a, ref, ActionResetPIN, "", "", func(tx storage.RegistryTx, c storage.Card) error {
		return tx.SetPIN(ctx, c.ID, PINVerifier(s.pinKey, c.ID, InitialPIN), true)
	})
}

// cardAction is the common shape of an outlet action on one card: read,
// version check, transition, optional extra step, optimistic update, e-card
// propagation, events, audit — one transaction.
func (s *Service) cardAction(ctx context.Context, a Actor, ref CardRef, act Action, evType string, reason storage.CancelReason,
	extra func(storage.RegistryTx, storage.Card) error) (storage.Card, error) {
	number, err := ParseCardNumber(ref.Number)
	if err != nil {
		return storage.Card{}, err
	}
	var out storage.Card
	err = s.tx(ctx, func(tx storage.RegistryTx) error {
		c, err := s.loadCard(ctx, tx, number, ref.Version)
		if err != nil {
			return err
		}
		from := c.Status
		to, err := CardTransition(from, act)
		if err != nil {
			return err
		}
		if extra != nil {
			if err := extra(tx, c); err != nil {
				return err
			}
		}
		c.Status = to
		if act == ActionCancel {
			c.CancelReason = reason
		}
		out, err = tx.UpdateCard(ctx, c)
		if err != nil {
			return err
		}
		details := map[string]any{"holder_id": c.HolderID, "number": MaskCardNumber(c.Number), "from": from, "to": to}
		if reason != "" {
			details["reason"] = reason
		}
		if evType != "" {
			if err := s.event(ctx, tx, evType, c.ID, map[string]any{"holder_id": c.HolderID, "card_id": c.ID, "reason": reason}); err != nil {
				return err
			}
		}
		if err := s.propagate(ctx, tx, c, act, reason); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, act, c.ID, details)
	})
	return out, err
}

// loadCard reads the card inside tx and applies the caller's expected version.
func (s *Service) loadCard(ctx context.Context, tx storage.RegistryTx, number string, version int64) (storage.Card, error) {
	c, err := tx.CardByNumber(ctx, number)
	if err != nil {
		return c, err
	}
	if version != 0 && c.Version != version {
		return c, fmt.Errorf("%w: card is at version %d, not %d", ErrConflict, c.Version, version)
	}
	return c, nil
}

// propagate applies a card transition to the live e-card (DESIGN.md §6) and
// writes the consumer events.
func (s *Service) propagate(ctx context.Context, tx storage.RegistryTx, c storage.Card, act Action, reason storage.CancelReason) error {
	var eAct Action
	switch act {
	case ActionReportLoss:
		eAct = ActionSuspendECard
	case ActionUnfreeze:
		eAct = ActionResumeECard
	case ActionReplace, ActionCancel:
		eAct = ActionRevokeECard
	default:
		return nil
	}
	e, err := tx.LiveECardOfCard(ctx, c.ID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		e = storage.ECard{}
	case err != nil:
		return err
	}
	if e.ID != "" {
		to, err := ECardTransition(e.Status, eAct)
		if err != nil {
			// A card unfrozen while its e-card is active, or reported lost
			// while suspended for another reason: nothing to change.
			if !(eAct == ActionResumeECard || eAct == ActionSuspendECard) {
				return err
			}
			to = e.Status
		}
		if to != e.Status {
			e.Status = to
			if to == storage.ECardRevoked {
				e.RevokedAt = s.now().UTC()
			}
			if _, err := tx.UpdateECard(ctx, e); err != nil {
				return err
			}
			ev := map[Action]string{ActionSuspendECard: EventECardSuspended, ActionResumeECard: EventECardResumed, ActionRevokeECard: EventECardRevoked}[eAct]
			if err := s.event(ctx, tx, ev, e.ID, map[string]any{"ecard_id": e.ID, "card_id": c.ID, "holder_id": c.HolderID, "reason": string(act)}); err != nil {
				return err
			}
		}
	}
	if eAct == ActionResumeECard {
		return nil
	}
	why := string(act)
	if reason != "" {
		why = string(reason)
	}
	if err := s.event(ctx, tx, EventRevokeTokens, c.HolderID, map[string]any{"holder_id": c.HolderID, "card_id": c.ID, "ecard_id": e.ID, "reason": why}); err != nil {
		return err
	}
	if err := s.event(ctx, tx, EventBackchannelLogout, c.HolderID, map[string]any{"holder_id": c.HolderID, "reason": why}); err != nil {
		return err
	}
	if act == ActionCancel && (reason == storage.CancelDeath || reason == storage.CancelEmigration) {
		return s.event(ctx, tx, EventEntitlementTerminate, c.HolderID, map[string]any{"holder_id": c.HolderID, "reason": reason,
			"date": dateIn(s.now()).Format(time.DateOnly)})
	}
	return nil
}

// ReplaceRequest names the new card of a replacement.
type ReplaceRequest struct {
	NewNumber string
	// Region of the new card; empty keeps the old card's region.
	Region   string
	IssuedOn time.Time // zero: today
}

// Replace ends an active or lost card (replaced), revokes its e-card, and
// issues a new card with the initial PIN for the SAME holder, so pairwise
// subjects stay stable; the holder re-applies for an e-card on it.
func (s *Service) Replace(ctx context.Context, a Actor, ref CardRef, r ReplaceRequest) (Issued, error) {
	number, err := ParseCardNumber(ref.Number)
	if err != nil {
		return Issued{}, err
	}
	newNumber, err := ParseCardNumber(r.NewNumber)
	if err != nil {
		return Issued{}, err
	}
	if r.Region != "" {
		if _, err := ParseRegion(r.Region); err != nil {
			return Issued{}, err
		}
	}
	issuedOn := r.IssuedOn
	if issuedOn.IsZero() {
		issuedOn = dateIn(s.now())
	}
	var out Issued
	err = s.tx(ctx, func(tx storage.RegistryTx) error {
		old, err := s.loadCard(ctx, tx, number, ref.Version)
		if err != nil {
			return err
		}
		from := old.Status
		to, err := CardTransition(from, ActionReplace)
		if err != nil {
			return err
		}
		old.Status = to
		if _, err := tx.UpdateCard(ctx, old); err != nil {
			return err
		}
		if err := s.propagate(ctx, tx, old, ActionReplace, ""); err != nil {
			return err
		}
		region := r.Region
		if region == "" {
			region = old.Region
		}
		nc, err := s.createCard(ctx, tx, old.HolderID, newNumber, region, issuedOn)
		if err != nil {
			return err
		}
		h, err := tx.Holder(ctx, old.HolderID)
		if err != nil {
			return err
		}
		out = Issued{Holder: h, Card: nc}
		if err := s.event(ctx, tx, EventCardIssued, nc.ID, map[string]any{"holder_id": h.ID, "card_id": nc.ID, "region": region}); err != nil {
			return err
		}
		if err := s.event(ctx, tx, EventCardReplaced, old.ID, map[string]any{"holder_id": old.HolderID, "card_id": old.ID, "new_card_id": nc.ID}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, ActionReplace, old.ID, map[string]any{"holder_id": old.HolderID, "from": from,
			"number": MaskCardNumber(old.Number), "new_card_id": nc.ID, "new_number": MaskCardNumber(nc.Number)})
	})
	return out, err
}

// ---- helpers ----

// tx runs fn in one registry transaction and maps storage errors to the
// card sentinels (keeping the storage error in the chain).
func (s *Service) tx(ctx context.Context, fn func(storage.RegistryTx) error) error {
	return mapErr(s.reg.Tx(ctx, fn))
}

// mapErr maps storage sentinels to card sentinels; card errors pass through.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrConflict), errors.Is(err, ErrNotFound), errors.Is(err, ErrExists), errors.Is(err, ErrUnavailable):
		return err
	case errors.Is(err, storage.ErrUnavailable):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	case errors.Is(err, storage.ErrConflict):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, storage.ErrDuplicate):
		return fmt.Errorf("%w: %w", ErrExists, err)
	}
	return err
}

func (s *Service) event(ctx context.Context, tx storage.RegistryTx, typ, aggregate string, payload map[string]any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	_, err = tx.AppendEvent(ctx, storage.Event{Type: typ, Aggregate: aggregate, Payload: b})
	return err
}

// audit appends the action's audit entry. details must never hold PII in
// clear (use the Mask functions).
func (s *Service) audit(ctx context.Context, tx storage.RegistryTx, a Actor, act Action, target string, details map[string]any) error {
	b, err := json.Marshal(details)
	if err != nil {
		return err
	}
	_, err = tx.AppendAudit(ctx, storage.AuditEntry{At: s.now().UTC(), Actor: a.ID, Act: a.OnBehalfOf, Action: string(act), Target: target, Details: b})
	return err
}

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b[:])
}
