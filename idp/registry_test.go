package idp

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/essc-project/essc/storage"
)

// fakeRegistry answers the reads RegistryDirectory and RegistryConsents make; the embedded
// interface is nil so any other call would fail the test loudly.
type fakeRegistry struct {
	storage.RegistryReader
	ecards  map[string]storage.ECard
	cards   map[string]storage.Card
	holders map[string]storage.Holder
	grants  map[string]map[string][]string
	down    bool
}

func (f *fakeRegistry) get(ok bool) error {
	if f.down {
		return fmt.Errorf("db: %w", storage.ErrUnavailable)
	}
	if !ok {
		return storage.ErrNotFound
	}
	return nil
}

func (f *fakeRegistry) ECard(_ context.Context, id string) (storage.ECard, error) {
	e, ok := f.ecards[id]
	return e, f.get(ok)
}

func (f *fakeRegistry) Card(_ context.Context, id string) (storage.Card, error) {
	c, ok := f.cards[id]
	return c, f.get(ok)
}

func (f *fakeRegistry) ECardWithCard(ctx context.Context, id string) (storage.ECard, storage.Card, error) {
	e, err := f.ECard(ctx, id)
	if err != nil {
		return e, storage.Card{}, err
	}
	c, err := f.Card(ctx, e.CardID)
	return e, c, err
}

func (f *fakeRegistry) ECardWithHolder(ctx context.Context, id string) (storage.Holder, storage.ECard, storage.Card, error) {
	e, c, err := f.ECardWithCard(ctx, id)
	if err != nil {
		return storage.Holder{}, e, c, err
	}
	h, err := f.Holder(ctx, e.HolderID)
	return h, e, c, err
}

func (f *fakeRegistry) Holder(_ context.Context, id string) (storage.Holder, error) {
	h, ok := f.holders[id]
	return h, f.get(ok)
}

// ECardWithCardAndGrant, Granted and Grant make the fake a
// storage.ConsentsWithCards; grants are by holder, then client.
func (f *fakeRegistry) ECardWithCardAndGrant(ctx context.Context, id, clientID string) (storage.ECard, storage.Card, []string, error) {
	e, c, err := f.ECardWithCard(ctx, id)
	if err != nil {
		return e, c, nil, err
	}
	return e, c, f.grants[e.HolderID][clientID], nil
}

func (f *fakeRegistry) Granted(_ context.Context, holderID, clientID string) ([]string, error) {
	return f.grants[holderID][clientID], f.get(true)
}

func (f *fakeRegistry) Grant(context.Context, string, string, []string) error {
	return errors.New("fake registry: Grant not used by these tests")
}

func TestRegistryDirectory(t *testing.T) {
	base := func() *fakeRegistry {
		return &fakeRegistry{
			ecards:  map[string]storage.ECard{"e1": {ID: "e1", CardID: "c1", HolderID: "h1", Level: 2, Status: storage.ECardActive}},
			cards:   map[string]storage.Card{"c1": {ID: "c1", HolderID: "h1", Region: "410100", Status: storage.CardActive}},
			holders: map[string]storage.Holder{"h1": {ID: "h1", Name: "李四", SSN: "410102198001011234", SSNMasked: "4101**********1234"}},
			grants:  map[string]map[string][]string{"h1": {"portal": {"profile"}}, "h2": {"portal": {"essc.card"}}},
		}
	}
	for _, tt := range []struct {
		name   string
		mutate func(*fakeRegistry)
		holder string
		want   error
	}{
		{"ok/active", func(*fakeRegistry) {}, "h1", nil},
		{"fail/unknown e-card", func(f *fakeRegistry) { delete(f.ecards, "e1") }, "h1", ErrInactive},
		{"fail/other holder", func(*fakeRegistry) {}, "h2", ErrInactive},
		{"fail/e-card suspended", func(f *fakeRegistry) { e := f.ecards["e1"]; e.Status = storage.ECardSuspended; f.ecards["e1"] = e }, "h1", ErrInactive},
		{"fail/card lost", func(f *fakeRegistry) { c := f.cards["c1"]; c.Status = storage.CardLost; f.cards["c1"] = c }, "h1", ErrInactive},
		{"fail/card cancelled", func(f *fakeRegistry) { c := f.cards["c1"]; c.Status = storage.CardCancelled; f.cards["c1"] = c }, "h1", ErrInactive},
		{"fail/initial PIN", func(f *fakeRegistry) { c := f.cards["c1"]; c.PIN.MustChange = true; f.cards["c1"] = c }, "h1", ErrInactive},
		{"fail/registry down", func(f *fakeRegistry) { f.down = true }, "h1", storage.ErrUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := base()
			tt.mutate(f)
			id, err := RegistryDirectory{Registry: f}.Identity(context.Background(), tt.holder, "e1")
			granted, gerr := RegistryConsents{Registry: f}.CheckGranted(context.Background(), tt.holder, "e1", "portal")
			if tt.want == nil {
				if cerr := (RegistryDirectory{Registry: f}).Check(context.Background(), tt.holder, "e1"); cerr != nil {
					t.Fatalf("Check: %v", cerr)
				}
				if gerr != nil || len(granted) != 1 || granted[0] != "profile" {
					t.Fatalf("CheckGranted: %v %v, want the holder's own grant", granted, gerr)
				}
				if err != nil || id.Name != "李四" || id.Level != 2 || id.Region != "410100" || id.SSNMasked == "" {
					t.Fatalf("%+v %v", id, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if cerr := (RegistryDirectory{Registry: f}).Check(context.Background(), tt.holder, "e1"); !errors.Is(cerr, tt.want) {
				t.Fatalf("Check: %v, want %v", cerr, tt.want)
			}
			if !errors.Is(gerr, tt.want) || granted != nil {
				t.Fatalf("CheckGranted: %v %v, want %v and no grant", granted, gerr, tt.want)
			}
			if tt.want == ErrInactive && errors.Is(err, storage.ErrUnavailable) {
				t.Fatal("inactive reported as outage")
			}
		})
	}
}
