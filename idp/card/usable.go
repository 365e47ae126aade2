package card

import (
	"fmt"

	"github.com/essc-project/essc/storage"
)

// Usable is the one rule for whether holderID may use e-card e (whose card
// is c) to sign in, confirm a login, present or be issued anything
// (DESIGN.md §6): the e-card and its card are the holder's and active, and
// the initial PIN has been changed. It reads nothing; callers pass the rows
// they read (storage.RegistryReader.ECardWithCard). The error wraps
// ErrNotUsable with the reason.
func Usable(holderID string, e storage.ECard, c storage.Card) error {
	var why string
	switch {
	case e.HolderID != holderID:
		why = "not the holder's"
	case e.Status != storage.ECardActive:
		why = "e-card " + string(e.Status)
	case c.ID != e.CardID:
		why = "not the e-card's card"
	case c.HolderID != holderID:
		why = "card of another holder"
	case c.Status != storage.CardActive:
		why = "card " + string(c.Status)
	case c.PIN.MustChange:
		why = "initial PIN not changed"
	default:
		return nil
	}
	return fmt.Errorf("e-card %q: %s: %w", e.ID, why, ErrNotUsable)
}
