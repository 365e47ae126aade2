package idp

import (
	"context"
	"errors"
	"fmt"

	"github.com/essc-project/essc/storage"
)

// RegistryDirectory is the HolderDirectory over the durable registry: three
// indexed point reads (e-card, card, holder) per check.
type RegistryDirectory struct {
	Registry storage.RegistryReader
}

var _ HolderDirectory = RegistryDirectory{}

// Identity implements HolderDirectory: the e-card must be the holder's and
// active, its card active with no pending initial-PIN change (DESIGN.md §6).
// Unknown records are ErrInactive; outages pass through (storage.ErrUnavailable).
func (d RegistryDirectory) Identity(ctx context.Context, holderID, ecardID string) (Identity, error) {
	inactive := func(why string) (Identity, error) {
		return Identity{}, fmt.Errorf("e-card %q: %s: %w", ecardID, why, ErrInactive)
	}
	e, err := d.Registry.ECard(ctx, ecardID)
	if errors.Is(err, storage.ErrNotFound) {
		return inactive("unknown e-card")
	} else if err != nil {
		return Identity{}, err
	}
	if e.HolderID != holderID {
		return inactive("not the holder's")
	}
	if e.Status != storage.ECardActive {
		return inactive("e-card " + string(e.Status))
	}
	c, err := d.Registry.Card(ctx, e.CardID)
	if errors.Is(err, storage.ErrNotFound) {
		return inactive("unknown card")
	} else if err != nil {
		return Identity{}, err
	}
	switch {
	case c.HolderID != holderID:
		return inactive("card of another holder")
	case c.Status != storage.CardActive:
		return inactive("card " + string(c.Status))
	case c.PIN.MustChange:
		return inactive("initial PIN not changed")
	}
	h, err := d.Registry.Holder(ctx, holderID)
	if errors.Is(err, storage.ErrNotFound) {
		return inactive("unknown holder")
	} else if err != nil {
		return Identity{}, err
	}
	return Identity{HolderID: h.ID, ECardID: e.ID, Name: h.Name, SSN: h.SSN, SSNMasked: h.SSNMasked,
		CardStatus: string(c.Status), Region: c.Region, Level: e.Level}, nil
}
