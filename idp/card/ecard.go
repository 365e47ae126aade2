package card

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/essc-project/essc/storage"
)

// DeviceKey is a device public key to bind. The caller (the wallet API) has
// verified the proof of possession and computed the RFC 7638 thumbprint.
type DeviceKey struct {
	Thumbprint   string
	PublicKeyJWK []byte
	Channel      string
}

func (d DeviceKey) check() error {
	if d.Thumbprint == "" || len(d.Thumbprint) > 128 || len(d.PublicKeyJWK) == 0 || len(d.PublicKeyJWK) > 4096 || len(d.Channel) > 64 {
		return fmt.Errorf("%w: device key", ErrInvalidRequest)
	}
	return nil
}

// ApplyRequest is an online e-card application (DESIGN.md §6).
type ApplyRequest struct {
	CardNumber string
	SSN        string
	Name       string
	PIN        string
	Device     DeviceKey
}

// Grant is what the wallet needs to sign the e-card credential JWT: the
// holder (subject derivation, masked SSN for display), the card (status,
// region), the e-card (id, level) and the bound device (cnf key).
type Grant struct {
	Holder storage.Holder
	Card   storage.Card
	ECard  storage.ECard
	Device storage.Device
}

// ApplyECard issues a level-1 e-card bound to the card and the device key.
// Card number, SSN, name and PIN must all match; any mismatch, an unknown
// card or a wrong or locked PIN is ErrAuthFailed (uniform). After a correct
// PIN: an initial PIN is ErrMustChangePIN, a card that is not active a
// *TransitionError (e.g. lost), a card that already has a live e-card
// ErrExists (the database's partial unique index backs this up).
func (s *Service) ApplyECard(ctx context.Context, a Actor, r ApplyRequest) (Grant, error) {
	if err := r.Device.check(); err != nil {
		return Grant{}, err
	}
	ssn, serr := ParseSSN(r.SSN, s.now())
	name, nerr := CheckName(r.Name)
	v, err := s.verifyPINOf(ctx, r.CardNumber, r.PIN, ActionApplyECard, func(h storage.Holder) bool {
		return serr == nil && nerr == nil && ssn.Raw() == h.SSN && name == h.Name
	})
	if err != nil {
		return Grant{}, err
	}
	if v.MustChange {
		return Grant{}, ErrMustChangePIN
	}
	var g Grant
	err = s.tx(ctx, func(tx storage.RegistryTx) error {
		c, err := tx.Card(ctx, v.Card.ID)
		if err != nil {
			return err
		}
		if _, err := CardTransition(c.Status, ActionApplyECard); err != nil {
			return err
		}
		if err := s.authorize(ctx, tx, a, c.HolderID, ActionApplyECard); err != nil {
			return err
		}
		if _, err := tx.LiveECardOfCard(ctx, c.ID); err == nil {
			return fmt.Errorf("%w: the card already has a live e-card", ErrExists)
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		e, err := tx.CreateECard(ctx, storage.ECard{ID: newID(), CardID: c.ID, HolderID: c.HolderID, Level: 1, Status: storage.ECardActive})
		if err != nil {
			return err
		}
		d, err := tx.AddDevice(ctx, storage.Device{ID: newID(), ECardID: e.ID, Thumbprint: r.Device.Thumbprint,
			PublicKeyJWK: r.Device.PublicKeyJWK, Channel: r.Device.Channel})
		if err != nil {
			return err
		}
		g = Grant{Holder: v.Holder, Card: c, ECard: e, Device: d}
		if err := s.event(ctx, tx, EventECardIssued, e.ID, map[string]any{"holder_id": c.HolderID, "card_id": c.ID, "ecard_id": e.ID}); err != nil {
			return err
		}
		return s.audit(ctx, tx, s.holderActor(a, c.HolderID), ActionApplyECard, e.ID, map[string]any{"holder_id": c.HolderID,
			"card_id": c.ID, "device_id": d.ID, "channel": d.Channel})
	})
	return g, err
}

// holderActor fills in the holder as actor when the caller left it empty.
func (s *Service) holderActor(a Actor, holderID string) Actor {
	if a.ID == "" {
		a.ID = holderID
	}
	return a
}

// ECard returns the e-card with this id and its card (for the wallet and
// the token issuers' status re-check).
func (s *Service) ECard(ctx context.Context, id string) (storage.ECard, storage.Card, error) {
	e, err := s.reg.ECard(ctx, id)
	if err != nil {
		return e, storage.Card{}, mapErr(err)
	}
	c, err := s.reg.Card(ctx, e.CardID)
	return e, c, mapErr(err)
}

// ActivateBank raises an active e-card to level 2 (bank-linked payments).
// A delegated actor needs a guardian delegation: agents are refused
// (ErrNotDelegated), whatever their recorded scopes.
func (s *Service) ActivateBank(ctx context.Context, a Actor, ecardID string) (storage.ECard, error) {
	var out storage.ECard
	err := s.tx(ctx, func(tx storage.RegistryTx) error {
		e, err := tx.ECard(ctx, ecardID)
		if err != nil {
			return err
		}
		if _, err := ECardTransition(e.Status, ActionActivateBank); err != nil {
			return err
		}
		if err := s.authorize(ctx, tx, a, e.HolderID, ActionActivateBank); err != nil {
			return err
		}
		if e.Level >= 2 {
			out = e
			return nil
		}
		e.Level = 2
		if out, err = tx.UpdateECard(ctx, e); err != nil {
			return err
		}
		if err := s.event(ctx, tx, EventECardLevel, e.ID, map[string]any{"holder_id": e.HolderID, "ecard_id": e.ID, "level": 2}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, ActionActivateBank, e.ID, map[string]any{"holder_id": e.HolderID, "level": 2})
	})
	return out, err
}

// BindDevice binds another device key to an active e-card, up to the
// configured cap (ErrDeviceLimit). A key already bound live is ErrExists.
func (s *Service) BindDevice(ctx context.Context, a Actor, ecardID string, k DeviceKey) (storage.Device, error) {
	if err := k.check(); err != nil {
		return storage.Device{}, err
	}
	var out storage.Device
	err := s.tx(ctx, func(tx storage.RegistryTx) error {
		e, err := tx.ECard(ctx, ecardID)
		if err != nil {
			return err
		}
		if _, err := ECardTransition(e.Status, ActionBindDevice); err != nil {
			return err
		}
		if err := s.authorize(ctx, tx, a, e.HolderID, ActionBindDevice); err != nil {
			return err
		}
		ds, err := tx.Devices(ctx, e.ID)
		if err != nil {
			return err
		}
		live := 0
		for _, d := range ds {
			if d.RevokedAt.IsZero() {
				live++
			}
		}
		if live >= s.maxDevices {
			return fmt.Errorf("%w: %d live devices", ErrDeviceLimit, live)
		}
		if out, err = tx.AddDevice(ctx, storage.Device{ID: newID(), ECardID: e.ID, Thumbprint: k.Thumbprint, PublicKeyJWK: k.PublicKeyJWK, Channel: k.Channel}); err != nil {
			return err
		}
		if err := s.event(ctx, tx, EventDeviceBound, e.ID, map[string]any{"holder_id": e.HolderID, "ecard_id": e.ID, "device_id": out.ID}); err != nil {
			return err
		}
		return s.audit(ctx, tx, s.holderActor(a, e.HolderID), ActionBindDevice, out.ID, map[string]any{"holder_id": e.HolderID, "ecard_id": e.ID, "channel": k.Channel})
	})
	return out, err
}

// UnbindDevice revokes a device binding (allowed while the e-card is
// suspended, e.g. for a stolen phone); the device's tokens are revoked
// through the outbox.
func (s *Service) UnbindDevice(ctx context.Context, a Actor, deviceID string) error {
	return s.tx(ctx, func(tx storage.RegistryTx) error {
		d, err := tx.Device(ctx, deviceID)
		if err != nil {
			return err
		}
		e, err := tx.ECard(ctx, d.ECardID)
		if err != nil {
			return err
		}
		if _, err := ECardTransition(e.Status, ActionUnbindDevice); err != nil {
			return err
		}
		if err := s.authorize(ctx, tx, a, e.HolderID, ActionUnbindDevice); err != nil {
			return err
		}
		if !d.RevokedAt.IsZero() {
			return nil
		}
		if err := tx.RevokeDevice(ctx, d.ID); err != nil {
			return err
		}
		if err := s.event(ctx, tx, EventDeviceUnbound, e.ID, map[string]any{"holder_id": e.HolderID, "ecard_id": e.ID, "device_id": d.ID}); err != nil {
			return err
		}
		if err := s.event(ctx, tx, EventRevokeTokens, e.HolderID, map[string]any{"holder_id": e.HolderID, "ecard_id": e.ID, "device_id": d.ID, "reason": "device.unbind"}); err != nil {
			return err
		}
		return s.audit(ctx, tx, s.holderActor(a, e.HolderID), ActionUnbindDevice, d.ID, map[string]any{"holder_id": e.HolderID, "ecard_id": e.ID})
	})
}

// Delegate registers a delegation after CheckDelegation (outlet only: the
// outlet checked the authorisation document). Both holders must exist
// (ErrNotFound otherwise).
func (s *Service) Delegate(ctx context.Context, a Actor, principalSSN, agentSSN string, r DelegationRequest) (storage.Delegation, error) {
	now := s.now()
	var err error
	if r.Principal, err = ParseSSN(principalSSN, now); err != nil {
		return storage.Delegation{}, err
	}
	if r.Agent, err = ParseSSN(agentSSN, now); err != nil {
		return storage.Delegation{}, err
	}
	scopes, until, err := CheckDelegation(r, now)
	if err != nil {
		return storage.Delegation{}, err
	}
	var out storage.Delegation
	err = s.tx(ctx, func(tx storage.RegistryTx) error {
		p, err := tx.HolderBySSN(ctx, r.Principal.Raw())
		if err != nil {
			return err
		}
		ag, err := tx.HolderBySSN(ctx, r.Agent.Raw())
		if err != nil {
			return err
		}
		ss := make([]string, len(scopes))
		for i, sc := range scopes {
			ss[i] = string(sc)
		}
		out, err = tx.CreateDelegation(ctx, storage.Delegation{ID: newID(), PrincipalHolderID: p.ID, AgentHolderID: ag.ID, Kind: r.Kind,
			Scopes: ss, ValidFrom: now.UTC(), ValidUntil: until})
		if err != nil {
			return err
		}
		details := map[string]any{"principal": p.ID, "agent": ag.ID, "kind": r.Kind,
			"scopes": ss, "lacks_capacity": r.LacksCapacity, "evidence": r.Evidence}
		if !until.IsZero() {
			details["valid_until"] = until.Format(time.RFC3339)
		}
		return s.audit(ctx, tx, a, ActionDelegate, out.ID, details)
	})
	return out, err
}

// RevokeDelegation ends a delegation now (idempotent).
func (s *Service) RevokeDelegation(ctx context.Context, a Actor, id string) error {
	return s.tx(ctx, func(tx storage.RegistryTx) error {
		d, err := tx.Delegation(ctx, id)
		if err != nil {
			return err
		}
		if err := tx.RevokeDelegation(ctx, id); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, ActionRevokeDelegate, id, map[string]any{"principal": d.PrincipalHolderID, "agent": d.AgentHolderID})
	})
}
