package card_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/storage"
)

func TestUsable(t *testing.T) {
	ok := func() (storage.ECard, storage.Card) {
		return storage.ECard{ID: "e1", CardID: "c1", HolderID: "h1", Status: storage.ECardActive},
			storage.Card{ID: "c1", HolderID: "h1", Status: storage.CardActive}
	}
	for _, tc := range []struct {
		name   string
		holder string
		mutate func(*storage.ECard, *storage.Card)
		why    string
	}{
		{"ok/active", "h1", func(*storage.ECard, *storage.Card) {}, ""},
		{"fail/other-holder", "h2", func(*storage.ECard, *storage.Card) {}, "not the holder's"},
		{"fail/ecard-suspended", "h1", func(e *storage.ECard, _ *storage.Card) { e.Status = storage.ECardSuspended }, "e-card suspended"},
		{"fail/ecard-revoked", "h1", func(e *storage.ECard, _ *storage.Card) { e.Status = storage.ECardRevoked }, "e-card revoked"},
		{"fail/card-of-another-ecard", "h1", func(_ *storage.ECard, c *storage.Card) { c.ID = "c2" }, "not the e-card's card"},
		{"fail/card-of-another-holder", "h1", func(_ *storage.ECard, c *storage.Card) { c.HolderID = "h2" }, "card of another holder"},
		{"fail/card-lost", "h1", func(_ *storage.ECard, c *storage.Card) { c.Status = storage.CardLost }, "card lost"},
		{"fail/card-cancelled", "h1", func(_ *storage.ECard, c *storage.Card) { c.Status = storage.CardCancelled }, "card cancelled"},
		{"fail/initial-pin", "h1", func(_ *storage.ECard, c *storage.Card) { c.PIN.MustChange = true }, "initial PIN not changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, c := ok()
			tc.mutate(&e, &c)
			err := card.Usable(tc.holder, e, c)
			if tc.why == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, card.ErrNotUsable) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("got %v, want ErrNotUsable with %q", err, tc.why)
			}
		})
	}
}
