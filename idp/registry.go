package idp

import (
	"context"
	"errors"
	"fmt"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/storage"
)

// RegistryDirectory is the HolderDirectory over the durable registry: one
// indexed join per check (e-card and card; with the holder for Identity).
type RegistryDirectory struct {
	Registry storage.RegistryReader
}

var _ HolderDirectory = RegistryDirectory{}

// Identity implements HolderDirectory: the e-card must be the holder's and
// active, its card active with no pending initial-PIN change (DESIGN.md §6).
// Unknown records are ErrInactive; outages pass through (storage.ErrUnavailable).
func (d RegistryDirectory) Identity(ctx context.Context, holderID, ecardID string) (Identity, error) {
	h, e, c, err := d.Registry.ECardWithHolder(ctx, ecardID)
	if err := usable(holderID, ecardID, e, c, err); err != nil {
		return Identity{}, err
	}
	return Identity{HolderID: h.ID, ECardID: e.ID, Name: h.Name, SSN: h.SSN, SSNMasked: h.SSNMasked,
		CardStatus: string(c.Status), Region: c.Region, Level: e.Level}, nil
}

// Check implements HolderDirectory.
func (d RegistryDirectory) Check(ctx context.Context, holderID, ecardID string) error {
	_, _, err := d.check(ctx, holderID, ecardID)
	return err
}

func (d RegistryDirectory) check(ctx context.Context, holderID, ecardID string) (storage.ECard, storage.Card, error) {
	e, c, err := d.Registry.ECardWithCard(ctx, ecardID)
	if err := usable(holderID, ecardID, e, c, err); err != nil {
		return storage.ECard{}, storage.Card{}, err
	}
	return e, c, nil
}

// RegistryConsents is the ConsentStore over the registry. Its CheckGranted
// serves the login's completion: RegistryDirectory.Check's judgement of the
// holder's e-card and the holder's grant to the client, in one read.
type RegistryConsents struct {
	Registry storage.ConsentsWithCards
}

var _ interface {
	ConsentStore
	consentChecker
} = RegistryConsents{}

// Granted implements ConsentStore.
func (c RegistryConsents) Granted(ctx context.Context, holderID, clientID string) ([]string, error) {
	return c.Registry.Granted(ctx, holderID, clientID)
}

// Grant implements ConsentStore.
func (c RegistryConsents) Grant(ctx context.Context, holderID, clientID string, scopes []string) error {
	return c.Registry.Grant(ctx, holderID, clientID, scopes)
}

// CheckGranted judges holderID's e-card ecardID as RegistryDirectory.Check
// does (ErrInactive, outages passed through) and returns the scopes the
// holder granted clientID.
func (c RegistryConsents) CheckGranted(ctx context.Context, holderID, ecardID, clientID string) ([]string, error) {
	e, card, granted, err := c.Registry.ECardWithCardAndGrant(ctx, ecardID, clientID)
	if err := usable(holderID, ecardID, e, card, err); err != nil {
		return nil, err
	}
	return granted, nil
}

// usable judges e-card e and card c of holderID as read (with error err):
// unknown records are ErrInactive, outages pass through.
func usable(holderID, ecardID string, e storage.ECard, c storage.Card, err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return inactive(ecardID, "unknown e-card")
	} else if err != nil {
		return err
	}
	if err := card.Usable(holderID, e, c); err != nil {
		return fmt.Errorf("%w: %w", err, ErrInactive)
	}
	return nil
}

func inactive(ecardID, why string) error {
	return fmt.Errorf("e-card %q: %s: %w", ecardID, why, ErrInactive)
}
