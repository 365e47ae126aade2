package entitlement_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/storage"
	essql "github.com/essc-project/essc/storage/sql"
)

// cursorCounter counts the consumer's cursor writes.
type cursorCounter struct {
	*essql.Store
	writes []int64
}

func (c *cursorCounter) AdvanceCursor(ctx context.Context, consumer string, seq int64) error {
	c.writes = append(c.writes, seq)
	return c.Store.AdvanceCursor(ctx, consumer, seq)
}

// TestConsumeCardEventsCursorWrites: the card consumer writes its cursor
// after a card.cancelled and after the batch's last event, not after every
// event it skips, and reads nothing twice.
func TestConsumeCardEventsCursorWrites(t *testing.T) {
	engines(t, func(t *testing.T, open func(t *testing.T) *env) {
		e := open(t)
		ctx := context.Background()
		var seqs []int64
		for i, typ := range []string{"card.issued", "card.issued", card.EventCardCancelled, "ecard.applied", "card.lost"} {
			err := e.store.Tx(ctx, func(tx storage.RegistryTx) error {
				ev, err := tx.AppendEvent(ctx, storage.Event{Type: typ, Aggregate: fmt.Sprint(i),
					Payload: []byte(`{"holder_id":"nobody","reason":"lost"}`)})
				seqs = append(seqs, ev.Seq)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		reg := &cursorCounter{Store: e.store}
		svc, err := entitlement.New(entitlement.Config{Store: e.store, Registry: reg, Keys: e.keys, PairwiseKey: e.pairwise,
			Issuer: "https://idp.example.gov.cn", Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := svc.ConsumeCardEvents(ctx, 100); err != nil || n != len(seqs) {
			t.Fatalf("ConsumeCardEvents = %d, %v; want %d", n, err, len(seqs))
		}
		if want := []int64{seqs[2], seqs[4]}; fmt.Sprint(reg.writes) != fmt.Sprint(want) {
			t.Fatalf("cursor writes %v, want %v (after the cancellation and the last event)", reg.writes, want)
		}
		if n, err := svc.ConsumeCardEvents(ctx, 100); err != nil || n != 0 {
			t.Fatalf("second ConsumeCardEvents = %d, %v; want nothing re-read", n, err)
		}
	})
}
