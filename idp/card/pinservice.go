package card

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/essc-project/essc/storage"
)

// Verified is the outcome of a successful PIN check.
type Verified struct {
	Card   storage.Card
	Holder storage.Holder
	// MustChange is true for the initial or an outlet-reset PIN: the caller
	// may only let the holder change it (VerifyPIN then also returns
	// ErrMustChangePIN).
	MustChange bool
}

// VerifyPIN checks the PIN of the card with this number for an
// unauthenticated caller. Every failure — unknown or malformed card number,
// card not active, wrong PIN, locked PIN — is ErrAuthFailed; the reason is
// logged. The attempt is charged to the durable counter BEFORE comparing
// (storage.PINCounter), so concurrent guesses on many replicas cannot
// exceed LockAfter; the LockAfter-th consecutive failure locks the PIN until
// an outlet unlocks or resets it. A correct PIN resets the counter.
//
// A correct but initial/reset PIN returns the result with MustChange and
// ErrMustChangePIN: code, token and session issuers must treat that as a
// refusal (see CheckIssuable).
func (s *Service) VerifyPIN(ctx context.Context, number, pin string) (Verified, error) {
	v, err := s.verifyPIN(ctx, number, pin, ActionVerifyPIN)
	if err != nil {
		return Verified{}, err
	}
	if v.MustChange {
		return v, ErrMustChangePIN
	}
	return v, nil
}

// verifyPIN is VerifyPIN without the MustChange refusal; act is the action
// the PIN authorises (the card machine must allow it, except that apply
// accepts any card that is neither replaced nor cancelled). Every failure is
// logged with its reason and ErrAuthFailed is returned (ErrUnavailable when
// the registry cannot be reached). The attempt is charged before the
// comparison (with the audit entry of a failure, and when it locks, the
// lock's event), or the counter reset on success. A refusal before any
// comparison (unknown card, a card whose state refuses the action, a locked
// PIN) charges a card id that cannot exist, compares against a dummy and is
// audited as pin.verify_refused in the same way, so the latency tells an
// unauthenticated caller nothing the uniform answer does not.
func (s *Service) verifyPIN(ctx context.Context, number, pin string, act Action) (Verified, error) {
	return s.verifyPINOf(ctx, number, pin, act, nil)
}

// verifyPINOf is verifyPIN that also judges the card's holder with match
// (when not nil) before the PIN is compared: a holder that match refuses
// fails exactly as a wrong PIN does — charged, audited, counting towards
// the lock — so a known PIN cannot be used to try identities without limit,
// and the counter is reset only when PIN and holder are both right. The
// holder is read on every path (for an unknown card, a holder that cannot
// exist), so refusals take the time of a real check.
func (s *Service) verifyPINOf(ctx context.Context, number, pin string, act Action, match func(storage.Holder) bool) (Verified, error) {
	n, err := ParseCardNumber(number)
	if err != nil {
		PINVerifier(s.pinKey, "", "000000") // keep the timing of a real check
		return Verified{}, s.pinFail(ctx, number, act, "malformed card number", nil)
	}
	c, err := s.reg.CardByNumber(ctx, n)
	holderID := c.HolderID
	if err != nil {
		holderID = noCardID
	}
	h, herr := s.reg.Holder(ctx, holderID)
	if err == nil && herr != nil {
		return Verified{}, s.pinFail(ctx, n, act, "holder", herr)
	}
	if err == nil && match != nil && !match(h) {
		s.log.InfoContext(ctx, "card: holder identity mismatch", "card", MaskCardNumber(n), "action", string(act))
		pin = "" // compared and charged as a wrong PIN
	}
	if err := s.checkPIN(ctx, n, c, err, pin, act); err != nil {
		return Verified{}, err
	}
	c.PIN.Failures, c.PIN.Locked = 0, false
	return Verified{Card: c, Holder: h, MustChange: c.PIN.MustChange}, nil
}

// CheckPIN is VerifyPIN for a card the caller read a moment ago (the
// wallet's device authentication reads the card with the e-card): the same
// charged check, refusals and audit, without reading the card by number
// again or the holder at all. A correct PIN costs one statement
// (storage.PINCounter.AcceptPIN). ErrMustChangePIN as VerifyPIN.
func (s *Service) CheckPIN(ctx context.Context, c storage.Card, pin string) error {
	if err := s.checkPIN(ctx, c.Number, c, nil, pin, ActionVerifyPIN); err != nil {
		return err
	}
	if c.PIN.MustChange {
		return ErrMustChangePIN
	}
	return nil
}

// pinFail logs a failed check with its reason and returns what the caller
// answers: ErrUnavailable for a registry outage, ErrAuthFailed otherwise.
func (s *Service) pinFail(ctx context.Context, number string, act Action, reason string, err error) error {
	attrs := []any{"reason", reason, "card", MaskCardNumber(number), "action", string(act)}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "card: pin check failed", slog.Group("pin", attrs...))
	if err != nil && (errors.Is(err, storage.ErrUnavailable) || errors.Is(err, ErrUnavailable)) {
		return mapErr(err)
	}
	return ErrAuthFailed
}

// pinRefusal is why card c (read with error err) refuses a PIN check for
// act before any comparison, or "" when the PIN is to be compared.
func pinRefusal(c storage.Card, err error, act Action) string {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return "unknown card"
	case act != ActionApplyECard:
		if _, err := CardTransition(c.Status, act); err != nil {
			return "card " + string(c.Status)
		}
	case c.Status == storage.CardReplaced || c.Status == storage.CardCancelled:
		return "card " + string(c.Status)
	}
	return ""
}

// checkPIN checks pin against card c, which the caller read with error
// readErr. A PIN that matches the card as read and is not locked is
// accepted in one statement; every other attempt is charged before it is
// compared, in a transaction with its audit entry (verifyPIN).
func (s *Service) checkPIN(ctx context.Context, number string, c storage.Card, readErr error, pin string, act Action) error {
	if readErr != nil && !errors.Is(readErr, storage.ErrNotFound) {
		return s.pinFail(ctx, number, act, "lookup", readErr)
	}
	refused := pinRefusal(c, readErr, act)
	if refused == "" && !c.PIN.Locked && isPINShape(pin) && PINMatches(s.pinKey, c.ID, pin, c.PIN.Verifier) {
		ok, err := s.reg.AcceptPIN(ctx, c.ID, c.PIN.Verifier)
		if err != nil {
			return s.pinFail(ctx, number, act, "recording the check", err)
		}
		if ok {
			return nil
		}
		// Locked or changed since c was read: charge and compare against
		// the card as it is now.
		c, readErr = s.reg.Card(ctx, c.ID)
		if readErr != nil && !errors.Is(readErr, storage.ErrNotFound) {
			return s.pinFail(ctx, number, act, "lookup", readErr)
		}
		refused = pinRefusal(c, readErr, act)
	}
	chargeID := c.ID
	if refused != "" {
		chargeID = noCardID
	}
	var st storage.PINCounterState
	ok := false
	err := s.tx(ctx, func(tx storage.RegistryTx) error {
		var err error
		st, err = tx.ChargePINAttempt(ctx, chargeID, s.lockAfter)
		switch {
		case refused != "" && (err == nil || errors.Is(err, storage.ErrNotFound)):
		case errors.Is(err, storage.ErrPINLocked):
			refused = "locked"
		case err != nil:
			return err
		}
		ok = PINMatches(s.pinKey, chargeID, pin, c.PIN.Verifier) && isPINShape(pin) && refused == ""
		switch {
		case refused != "":
			return s.audit(ctx, tx, Actor{ID: "holder:unauthenticated"}, "pin.verify_refused", c.ID, map[string]any{"holder_id": c.HolderID,
				"number": MaskCardNumber(number), "reason": refused, "for": string(act)})
		case !ok:
			return s.pinFailed(ctx, tx, c, st, act)
		}
		return tx.ResetPINFailures(ctx, c.ID)
	})
	switch {
	case err != nil:
		return s.pinFail(ctx, number, act, "recording the check", err)
	case refused != "":
		return s.pinFail(ctx, number, act, refused, nil)
	case !ok:
		if st.Locked && s.onLocked != nil {
			s.onLocked()
		}
		return s.pinFail(ctx, number, act, fmt.Sprintf("wrong pin (%d consecutive)", st.Failures), nil)
	}
	return nil
}

// noCardID is a card id no card has (ids are 32 hex digits): what a refusal
// without a card to charge charges.
const noCardID = "-"

// pinFailed audits a wrong PIN on a known card and, when this failure
// locked the PIN, the lock (audit + outbox event), in the transaction that
// charged the attempt.
func (s *Service) pinFailed(ctx context.Context, tx storage.RegistryTx, c storage.Card, st storage.PINCounterState, act Action) error {
	if err := s.audit(ctx, tx, Actor{ID: "holder:unauthenticated"}, "pin.verify_failed", c.ID, map[string]any{"holder_id": c.HolderID,
		"number": MaskCardNumber(c.Number), "failures": st.Failures, "for": string(act)}); err != nil {
		return err
	}
	if !st.Locked {
		return nil
	}
	if err := s.event(ctx, tx, EventPINLocked, c.ID, map[string]any{"holder_id": c.HolderID, "card_id": c.ID}); err != nil {
		return err
	}
	return s.audit(ctx, tx, Actor{ID: "system"}, "pin.locked", c.ID, map[string]any{"holder_id": c.HolderID, "number": MaskCardNumber(c.Number), "after": s.lockAfter})
}

// CheckIssuable is what every code, token and session issuer calls on the
// registry's current card before issuing: nil only for an active card whose
// PIN is not in the must-change state. Otherwise ErrMustChangePIN or a
// *TransitionError.
func CheckIssuable(c storage.Card) error {
	if _, err := CardTransition(c.Status, ActionVerifyPIN); err != nil {
		return err
	}
	if c.PIN.MustChange {
		return ErrMustChangePIN
	}
	return nil
}

// ChangePIN replaces the holder's PIN after verifying the current one (the
// initial PIN is accepted here: this is how MustChange is cleared). Wrong
// current PIN is ErrAuthFailed (and counts towards the lock); a new PIN
// breaking the policy is an ErrWeakPIN error (CheckNewPIN) or
// ErrPINUnchanged.
func (s *Service) ChangePIN(ctx context.Context, a Actor, number, oldPIN, newPIN string) error {
	v, err := s.verifyPIN(ctx, number, oldPIN, ActionChangePIN)
	if err != nil {
		return err
	}
	ssn, err := ParseSSN(v.Holder.SSN, s.now())
	if err != nil {
		// Imported legacy numbers may fail today's rules; keep the generic
		// rules rather than refusing the holder.
		ssn = SSN{}
	}
	if err := CheckNewPIN(newPIN, ssn); err != nil {
		return err
	}
	if newPIN == oldPIN {
		return ErrPINUnchanged
	}
	return s.tx(ctx, func(tx storage.RegistryTx) error {
		c, err := tx.Card(ctx, v.Card.ID)
		if err != nil {
			return err
		}
		if c.Version != v.Card.Version || !PINMatches(s.pinKey, c.ID, oldPIN, c.PIN.Verifier) {
			return fmt.Errorf("%w: card changed during PIN change", ErrConflict)
		}
		if err := s.authorize(ctx, tx, a, c.HolderID, ActionChangePIN); err != nil {
			return err
		}
		if err := tx.SetPIN(ctx, c.ID, PINVerifier(s.pinKey, c.ID, newPIN), false); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, ActionChangePIN, c.ID, map[string]any{"holder_id": c.HolderID, "number": MaskCardNumber(c.Number)})
	})
}

// authorize checks that a may act for holderID: directly when a.OnBehalfOf
// is empty (the caller authenticated a as the holder), else through a valid
// delegation from a.OnBehalfOf (the principal, who must be holderID) to a.ID.
func (s *Service) authorize(ctx context.Context, tx storage.RegistryReader, a Actor, holderID string, act Action) error {
	if a.OnBehalfOf == "" {
		return nil
	}
	if a.OnBehalfOf != holderID {
		return fmt.Errorf("%w: principal is not the card holder", ErrNotDelegated)
	}
	_, err := s.delegationFor(ctx, tx, a.ID, holderID, act)
	return err
}

func (s *Service) delegationFor(ctx context.Context, r storage.RegistryReader, agent, principal string, act Action) (storage.Delegation, error) {
	ds, err := r.DelegationsOfAgent(ctx, agent)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return storage.Delegation{}, err
	}
	last := fmt.Errorf("%w: none registered", ErrNotDelegated)
	for _, d := range ds {
		if d.PrincipalHolderID != principal {
			continue
		}
		if err := Permits(d, act, s.now()); err != nil {
			last = err
			continue
		}
		return d, nil
	}
	return storage.Delegation{}, last
}

// Authorize returns the delegation that lets agentHolderID perform act for
// principalHolderID now, or an error wrapping ErrNotDelegated. Callers that
// issue delegated tokens put the agent in `act` (RFC 8693).
func (s *Service) Authorize(ctx context.Context, agentHolderID, principalHolderID string, act Action) (storage.Delegation, error) {
	d, err := s.delegationFor(ctx, s.reg, agentHolderID, principalHolderID, act)
	return d, mapErr(err)
}
