package registrytest

import (
	"context"
	dbsql "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/essc-project/essc/storage"
)

// NewDB creates a fresh, empty database for one test and returns a function
// that opens a registry on it. Open may be called more than once (the suite
// closes and reopens to prove durability across a restart); the suite closes
// every registry it opens.
type NewDB func(t *testing.T) (open func(t *testing.T) storage.Registry)

// RawSQL is the optional capability the tamper and encryption-at-rest tests
// need: direct access to the backing database, bypassing the registry.
// Rebind rewrites ? placeholders for the engine.
type RawSQL interface {
	DB() *dbsql.DB
	Rebind(query string) string
}

// Run runs the whole suite against the backend.
func Run(t *testing.T, newDB NewDB) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T) storage.Registry)
	}{
		{"holders", testHolders},
		{"ssn_encrypted_at_rest", testSSNAtRest},
		{"cards", testCards},
		{"concurrent_update_card", testConcurrentUpdateCard},
		{"pin_counter", testPINCounter},
		{"pin_concurrent_charge", testPINConcurrentCharge},
		{"pin_accept", testAcceptPIN},
		{"pin_lock_survives_restart", testPINRestart},
		{"ecards", testECards},
		{"concurrent_apply_ecard", testConcurrentECard},
		{"devices", testDevices},
		{"clients", testClients},
		{"delegations", testDelegations},
		{"tx_rollback", testTxRollback},
		{"outbox", testOutbox},
		{"outbox_concurrent", testOutboxConcurrent},
		{"audit_chain", testAudit},
		{"import", testImport},
		{"closed", testClosed},
		{"consents", testConsents},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			open := newDB(t)
			tc.fn(t, open)
		})
	}
	t.Run("audit_tamper", func(t *testing.T) { testAuditTamper(t, newDB) })
}

// fixture helpers ------------------------------------------------------------

// SSNs with valid GB 11643 checksums are not required by the store; these are
// shaped like real ones so masks look right.
func ssn(i int) string { return fmt.Sprintf("41130119%08d%02d", 50000000+i, i%100)[:18] }

func mustTx(t *testing.T, r storage.Registry, fn func(tx storage.RegistryTx) error) {
	t.Helper()
	if err := r.Tx(context.Background(), fn); err != nil {
		t.Fatalf("Tx: %v", err)
	}
}

type world struct {
	holder storage.Holder
	card   storage.Card
}

// seed creates a holder with one active card numbered number.
func seed(t *testing.T, r storage.Registry, i int, number string) world {
	t.Helper()
	var w world
	mustTx(t, r, func(tx storage.RegistryTx) error {
		var err error
		w.holder, err = tx.CreateHolder(context.Background(), storage.Holder{Name: fmt.Sprintf("张三%d", i), SSN: ssn(i)})
		if err != nil {
			return err
		}
		w.card, err = tx.CreateCard(context.Background(), storage.Card{HolderID: w.holder.ID, Number: number, Region: "411301",
			IssuedOn: time.Date(2020, 5, 1, 0, 0, 0, 0, time.UTC), Status: storage.CardActive,
			PIN: storage.PINState{Verifier: []byte("verifier-" + number), MustChange: true}})
		return err
	})
	return w
}

// seedECard is seed with an active level-1 e-card on the card.
func seedECard(t *testing.T, r storage.Registry, i int, number string) (world, storage.ECard) {
	t.Helper()
	w := seed(t, r, i, number)
	var e storage.ECard
	mustTx(t, r, func(tx storage.RegistryTx) error {
		var err error
		e, err = tx.CreateECard(context.Background(), storage.ECard{CardID: w.card.ID, HolderID: w.holder.ID, Level: 1})
		return err
	})
	return w, e
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %v, want %v", what, err, target)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func raw(t *testing.T, r storage.Registry) RawSQL {
	t.Helper()
	rs, ok := r.(RawSQL)
	if !ok {
		t.Skip("backend does not expose raw SQL")
	}
	return rs
}

// tests ----------------------------------------------------------------------

func testHolders(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	var h storage.Holder
	mustTx(t, r, func(tx storage.RegistryTx) error {
		var err error
		h, err = tx.CreateHolder(ctx, storage.Holder{Name: "李四", SSN: "41130119500101123x"})
		return err
	})
	if h.ID == "" || h.SSNMasked != "4113**********123X" {
		t.Fatalf("created holder: id %q mask %q", h.ID, h.SSNMasked)
	}
	got, err := r.Holder(ctx, h.ID)
	noErr(t, "Holder", err)
	if got.SSN != "41130119500101123X" || got.Name != "李四" || got.SSNMasked != h.SSNMasked {
		t.Fatalf("Holder = %+v", got)
	}
	for _, tc := range []struct{ name, ssn string }{{"ok/exact", "41130119500101123X"}, {"ok/lowercase_x", "41130119500101123x"}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.HolderBySSN(ctx, tc.ssn)
			noErr(t, "HolderBySSN", err)
			if got.ID != h.ID {
				t.Fatalf("HolderBySSN id %q, want %q", got.ID, h.ID)
			}
		})
	}
	t.Run("fail/unknown_ssn", func(t *testing.T) {
		_, err := r.HolderBySSN(ctx, "411301195001011239")
		wantErr(t, "HolderBySSN", err, storage.ErrNotFound)
	})
	t.Run("fail/unknown_id", func(t *testing.T) {
		_, err := r.Holder(ctx, "nope")
		wantErr(t, "Holder", err, storage.ErrNotFound)
	})
	t.Run("fail/duplicate_ssn", func(t *testing.T) {
		err := r.Tx(ctx, func(tx storage.RegistryTx) error {
			_, err := tx.CreateHolder(ctx, storage.Holder{Name: "重复", SSN: "41130119500101123X"})
			return err
		})
		wantErr(t, "CreateHolder", err, storage.ErrDuplicate)
	})
	t.Run("fail/empty_ssn", func(t *testing.T) {
		err := r.Tx(ctx, func(tx storage.RegistryTx) error {
			_, err := tx.CreateHolder(ctx, storage.Holder{Name: "空"})
			return err
		})
		wantErr(t, "CreateHolder", err, storage.ErrInvalidRecord)
	})
	t.Run("ok/rename", func(t *testing.T) {
		mustTx(t, r, func(tx storage.RegistryTx) error { return tx.UpdateHolderName(ctx, h.ID, "李四四") })
		got, err := r.Holder(ctx, h.ID)
		noErr(t, "Holder", err)
		if got.Name != "李四四" {
			t.Fatalf("name %q", got.Name)
		}
		err = r.Tx(ctx, func(tx storage.RegistryTx) error { return tx.UpdateHolderName(ctx, "nope", "x") })
		wantErr(t, "UpdateHolderName unknown", err, storage.ErrNotFound)
	})
}

func testSSNAtRest(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	rs := raw(t, r)
	w := seed(t, r, 7, "A00000007")
	plain := w.holder.SSN
	rows, err := rs.DB().Query(`SELECT * FROM holders`)
	noErr(t, "raw select", err)
	defer rows.Close()
	cols, _ := rows.Columns()
	n := 0
	for rows.Next() {
		n++
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		noErr(t, "scan", rows.Scan(ptrs...))
		for i, v := range vals {
			var s string
			switch v := v.(type) {
			case []byte:
				s = string(v)
			case string:
				s = v
			default:
				s = fmt.Sprint(v)
			}
			if strings.Contains(s, plain) || strings.Contains(s, plain[6:14]) {
				t.Fatalf("column %s holds the SSN (or its birth date) in plaintext", cols[i])
			}
		}
	}
	if n != 1 {
		t.Fatalf("holders rows = %d", n)
	}
	// Swapping a ciphertext onto another holder must not decrypt (AAD binds the id).
	w2 := seed(t, r, 8, "A00000008")
	_, err = rs.DB().Exec(rs.Rebind(`UPDATE holders SET ssn_enc = (SELECT ssn_enc FROM holders WHERE id = ?) WHERE id = ?`), w.holder.ID, w2.holder.ID)
	noErr(t, "raw swap", err)
	if _, err := r.Holder(context.Background(), w2.holder.ID); err == nil {
		t.Fatal("a ciphertext moved to another holder row decrypted")
	}
}

func testCards(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	w := seed(t, r, 1, "A00000001")
	c := w.card
	if c.Version != 1 || c.Status != storage.CardActive || !c.PIN.MustChange || string(c.PIN.Verifier) != "verifier-A00000001" {
		t.Fatalf("created card %+v", c)
	}
	if !c.IssuedOn.Equal(time.Date(2020, 5, 1, 0, 0, 0, 0, time.UTC)) || c.IssuedOn.Location() != time.UTC {
		t.Fatalf("IssuedOn %v", c.IssuedOn)
	}
	for _, tc := range []struct {
		name string
		get  func() (storage.Card, error)
		want error
	}{
		{"ok/by_id", func() (storage.Card, error) { return r.Card(ctx, c.ID) }, nil},
		{"ok/by_number", func() (storage.Card, error) { return r.CardByNumber(ctx, "A00000001") }, nil},
		{"fail/unknown_id", func() (storage.Card, error) { return r.Card(ctx, "nope") }, storage.ErrNotFound},
		{"fail/unknown_number", func() (storage.Card, error) { return r.CardByNumber(ctx, "Z99999999") }, storage.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.get()
			if tc.want != nil {
				wantErr(t, "get", err, tc.want)
				return
			}
			noErr(t, "get", err)
			if got.ID != c.ID || got.Number != c.Number || got.HolderID != w.holder.ID {
				t.Fatalf("got %+v", got)
			}
		})
	}
	for _, tc := range []struct {
		name string
		card storage.Card
		want error
	}{
		{"fail/duplicate_number", storage.Card{HolderID: w.holder.ID, Number: "A00000001", Region: "411301"}, storage.ErrDuplicate},
		{"fail/duplicate_id", storage.Card{ID: c.ID, HolderID: w.holder.ID, Number: "A00000099", Region: "411301"}, storage.ErrDuplicate},
		{"fail/unknown_holder", storage.Card{HolderID: "nope", Number: "A00000098", Region: "411301"}, storage.ErrNotFound},
		{"fail/no_number", storage.Card{HolderID: w.holder.ID, Region: "411301"}, storage.ErrInvalidRecord},
		{"fail/bad_status", storage.Card{HolderID: w.holder.ID, Number: "A00000097", Status: "frozen"}, storage.ErrInvalidRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Tx(ctx, func(tx storage.RegistryTx) error { _, err := tx.CreateCard(ctx, tc.card); return err })
			wantErr(t, "CreateCard", err, tc.want)
		})
	}
	t.Run("ok/update_then_stale", func(t *testing.T) {
		lost := c
		lost.Status = storage.CardLost
		var updated storage.Card
		mustTx(t, r, func(tx storage.RegistryTx) error {
			var err error
			updated, err = tx.UpdateCard(ctx, lost)
			return err
		})
		if updated.Version != 2 || updated.Status != storage.CardLost {
			t.Fatalf("updated %+v", updated)
		}
		// The same (now stale) version again: conflict.
		err := r.Tx(ctx, func(tx storage.RegistryTx) error { _, err := tx.UpdateCard(ctx, lost); return err })
		wantErr(t, "stale UpdateCard", err, storage.ErrConflict)
		gone := lost
		gone.ID = "nope"
		err = r.Tx(ctx, func(tx storage.RegistryTx) error { _, err := tx.UpdateCard(ctx, gone); return err })
		wantErr(t, "UpdateCard unknown", err, storage.ErrNotFound)
		cancelled := updated
		cancelled.Status, cancelled.CancelReason = storage.CardCancelled, storage.CancelDeath
		mustTx(t, r, func(tx storage.RegistryTx) error { _, err := tx.UpdateCard(ctx, cancelled); return err })
		got, err := r.Card(ctx, c.ID)
		noErr(t, "Card", err)
		if got.Status != storage.CardCancelled || got.CancelReason != storage.CancelDeath || got.Version != 3 {
			t.Fatalf("after cancel %+v", got)
		}
	})
	t.Run("ok/cards_of_holder", func(t *testing.T) {
		mustTx(t, r, func(tx storage.RegistryTx) error {
			_, err := tx.CreateCard(ctx, storage.Card{HolderID: w.holder.ID, Number: "A00000002", Region: "411301"})
			return err
		})
		cs, err := r.CardsOfHolder(ctx, w.holder.ID)
		noErr(t, "CardsOfHolder", err)
		if len(cs) != 2 || cs[0].Number != "A00000001" || cs[1].Number != "A00000002" {
			t.Fatalf("CardsOfHolder = %d cards", len(cs))
		}
		cs, err = r.CardsOfHolder(ctx, "nope")
		noErr(t, "CardsOfHolder none", err)
		if cs == nil || len(cs) != 0 {
			t.Fatalf("CardsOfHolder(unknown) = %v, want empty non-nil", cs)
		}
	})
}

func testConcurrentUpdateCard(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	w := seed(t, r, 2, "A00000003")
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c := w.card
			c.Status = storage.CardLost
			errs[i] = r.Tx(ctx, func(tx storage.RegistryTx) error {
				if _, err := tx.UpdateCard(ctx, c); err != nil {
					return err
				}
				_, err := tx.AppendEvent(ctx, storage.Event{Type: "card.lost", Aggregate: c.ID})
				return err
			})
		}()
	}
	close(start)
	wg.Wait()
	wins, conflicts := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, storage.ErrConflict):
			conflicts++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if wins != 1 || conflicts != n-1 {
		t.Fatalf("wins %d conflicts %d, want 1 and %d", wins, conflicts, n-1)
	}
	evs, err := r.Events(ctx, 0, 100)
	noErr(t, "Events", err)
	if len(evs) != 1 {
		t.Fatalf("%d events committed, want exactly the winner's 1", len(evs))
	}
	got, err := r.Card(ctx, w.card.ID)
	noErr(t, "Card", err)
	if got.Version != 2 {
		t.Fatalf("version %d, want 2", got.Version)
	}
}

func testPINCounter(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	w := seed(t, r, 3, "A00000004")
	for i := 1; i <= 6; i++ {
		f, locked, err := r.RecordPINFailure(ctx, w.card.ID, 5)
		noErr(t, "RecordPINFailure", err)
		if f != i || locked != (i >= 5) {
			t.Fatalf("failure %d: got failures %d locked %v", i, f, locked)
		}
	}
	_, err := r.ChargePINAttempt(ctx, w.card.ID, 5)
	wantErr(t, "ChargePINAttempt when locked", err, storage.ErrPINLocked)
	noErr(t, "ResetPINFailures", r.ResetPINFailures(ctx, w.card.ID))
	c, err := r.Card(ctx, w.card.ID)
	noErr(t, "Card", err)
	if c.PIN.Failures != 0 || c.PIN.Locked {
		t.Fatalf("after reset %+v", c.PIN)
	}
	st, err := r.ChargePINAttempt(ctx, w.card.ID, 5)
	noErr(t, "ChargePINAttempt", err)
	if st.Failures != 1 || st.Locked {
		t.Fatalf("charge %+v", st)
	}
	mustTx(t, r, func(tx storage.RegistryTx) error { return tx.SetPIN(ctx, w.card.ID, []byte("new"), false) })
	c, err = r.Card(ctx, w.card.ID)
	noErr(t, "Card", err)
	if string(c.PIN.Verifier) != "new" || c.PIN.MustChange || c.PIN.Failures != 0 || c.PIN.ChangedAt.IsZero() {
		t.Fatalf("after SetPIN %+v", c.PIN)
	}
	if c.Version != w.card.Version {
		t.Fatalf("PIN changes must not move the card version (%d → %d)", w.card.Version, c.Version)
	}
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"fail/record_unknown", func() error { _, _, err := r.RecordPINFailure(ctx, "nope", 5); return err }()},
		{"fail/charge_unknown", func() error { _, err := r.ChargePINAttempt(ctx, "nope", 5); return err }()},
		{"fail/reset_unknown", r.ResetPINFailures(ctx, "nope")},
		{"fail/setpin_unknown", r.Tx(ctx, func(tx storage.RegistryTx) error { return tx.SetPIN(ctx, "nope", nil, true) })},
	} {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.name, tc.err, storage.ErrNotFound) })
	}
}

func testPINConcurrentCharge(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	w := seed(t, r, 4, "A00000005")
	const n, limit = 20, 5
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed, refused := 0, 0
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.ChargePINAttempt(ctx, w.card.ID, limit)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				allowed++
			case errors.Is(err, storage.ErrPINLocked):
				refused++
			default:
				t.Errorf("ChargePINAttempt: %v", err)
			}
		}()
	}
	wg.Wait()
	if allowed != limit || refused != n-limit {
		t.Fatalf("allowed %d refused %d, want %d and %d", allowed, refused, limit, n-limit)
	}
	// RecordPINFailure from many goroutines counts every failure.
	noErr(t, "reset", r.ResetPINFailures(ctx, w.card.ID))
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := r.RecordPINFailure(ctx, w.card.ID, 1000); err != nil {
				t.Errorf("RecordPINFailure: %v", err)
			}
		}()
	}
	wg.Wait()
	c, err := r.Card(ctx, w.card.ID)
	noErr(t, "Card", err)
	if c.PIN.Failures != n {
		t.Fatalf("failures %d after %d concurrent increments", c.PIN.Failures, n)
	}
}

// testAcceptPIN: the one-statement path accepts only the stored verifier of
// an unlocked PIN, resets the counter when it does, and changes nothing when
// it does not (a wrong verifier, a locked PIN, an unknown card).
func testAcceptPIN(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	w := seed(t, r, 7, "A00000007")
	right, wrong := []byte("verifier-A00000007"), []byte("verifier-A00000008")
	failures := func() storage.PINState {
		t.Helper()
		c, err := r.Card(ctx, w.card.ID)
		noErr(t, "Card", err)
		return c.PIN
	}
	for range 2 {
		_, err := r.ChargePINAttempt(ctx, w.card.ID, 3)
		noErr(t, "ChargePINAttempt", err)
	}
	ok, err := r.AcceptPIN(ctx, w.card.ID, wrong)
	noErr(t, "AcceptPIN wrong", err)
	if ok || failures().Failures != 2 {
		t.Fatalf("a wrong verifier: accepted %v, state %+v (want refused, 2 failures untouched)", ok, failures())
	}
	ok, err = r.AcceptPIN(ctx, w.card.ID, right)
	noErr(t, "AcceptPIN right", err)
	if st := failures(); !ok || st.Failures != 0 || st.Locked {
		t.Fatalf("the right verifier: accepted %v, state %+v (want accepted, counter reset)", ok, st)
	}
	ok, err = r.AcceptPIN(ctx, w.card.ID, right)
	if err != nil || !ok {
		t.Fatalf("accepting again with no failures: %v %v", ok, err)
	}
	for range 3 {
		_, err := r.ChargePINAttempt(ctx, w.card.ID, 3)
		noErr(t, "ChargePINAttempt", err)
	}
	ok, err = r.AcceptPIN(ctx, w.card.ID, right)
	noErr(t, "AcceptPIN locked", err)
	if st := failures(); ok || !st.Locked || st.Failures != 3 {
		t.Fatalf("a locked PIN: accepted %v, state %+v (want refused, still locked)", ok, st)
	}
	ok, err = r.AcceptPIN(ctx, "nope", right)
	if err != nil || ok {
		t.Fatalf("unknown card: %v %v, want false and no error", ok, err)
	}
	mustTx(t, r, func(tx storage.RegistryTx) error {
		if err := tx.ResetPINFailures(ctx, w.card.ID); err != nil {
			return err
		}
		ok, err := tx.AcceptPIN(ctx, w.card.ID, right)
		if err == nil && !ok {
			err = errors.New("AcceptPIN in a transaction refused the right verifier")
		}
		return err
	})
}

func testPINRestart(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	w := seed(t, r, 5, "A00000006")
	for range 5 {
		if _, _, err := r.RecordPINFailure(ctx, w.card.ID, 5); err != nil {
			t.Fatal(err)
		}
	}
	noErr(t, "Close", r.Close())
	r2 := open(t)
	c, err := r2.CardByNumber(ctx, "A00000006")
	noErr(t, "CardByNumber after reopen", err)
	if !c.PIN.Locked || c.PIN.Failures != 5 {
		t.Fatalf("after restart PIN state %+v, want locked with 5 failures", c.PIN)
	}
	_, err = r2.ChargePINAttempt(ctx, c.ID, 5)
	wantErr(t, "charge after restart", err, storage.ErrPINLocked)
}

func testECards(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	w, e := seedECard(t, r, 6, "A00000010")
	if e.ID == "" || e.Status != storage.ECardActive || e.Version != 1 {
		t.Fatalf("created %+v", e)
	}
	t.Run("fail/second_live", func(t *testing.T) {
		err := r.Tx(ctx, func(tx storage.RegistryTx) error {
			_, err := tx.CreateECard(ctx, storage.ECard{CardID: w.card.ID, HolderID: w.holder.ID, Level: 2})
			return err
		})
		wantErr(t, "second live e-card", err, storage.ErrDuplicate)
	})
	t.Run("fail/second_live_raw_sql", func(t *testing.T) {
		rs := raw(t, r)
		_, err := rs.DB().Exec(rs.Rebind(`INSERT INTO ecards (id, card_id, holder_id, level, status, version, revoked_at, created_at, updated_at)
			VALUES ('raw1', ?, ?, 1, 'suspended', 1, 0, 1, 1)`), w.card.ID, w.holder.ID)
		if err == nil {
			t.Fatal("the database accepted a second live e-card for one card")
		}
	})
	t.Run("fail/level", func(t *testing.T) {
		other := seed(t, r, 60, "A00000060")
		err := r.Tx(ctx, func(tx storage.RegistryTx) error {
			_, err := tx.CreateECard(ctx, storage.ECard{CardID: other.card.ID, HolderID: other.holder.ID, Level: 3})
			return err
		})
		wantErr(t, "level 3", err, storage.ErrInvalidRecord)
	})
	got, err := r.LiveECardOfCard(ctx, w.card.ID)
	noErr(t, "LiveECardOfCard", err)
	if got.ID != e.ID {
		t.Fatalf("live e-card %q, want %q", got.ID, e.ID)
	}
	susp := e
	susp.Status = storage.ECardSuspended
	mustTx(t, r, func(tx storage.RegistryTx) error { var err error; susp, err = tx.UpdateECard(ctx, susp); return err })
	if susp.Version != 2 {
		t.Fatalf("version %d", susp.Version)
	}
	// One read of e-card and card sees the same rows as the two point reads.
	je, jc, err := r.ECardWithCard(ctx, e.ID)
	noErr(t, "ECardWithCard", err)
	wantE, _ := r.ECard(ctx, e.ID)
	wantC, _ := r.Card(ctx, w.card.ID)
	if !reflect.DeepEqual(je, wantE) || !reflect.DeepEqual(jc, wantC) || je.Status != storage.ECardSuspended {
		t.Fatalf("ECardWithCard = %+v %+v, want %+v %+v", je, jc, wantE, wantC)
	}
	_, _, err = r.ECardWithCard(ctx, "no-such-ecard")
	wantErr(t, "ECardWithCard unknown", err, storage.ErrNotFound)
	hh, he, hc, err := r.ECardWithHolder(ctx, e.ID)
	noErr(t, "ECardWithHolder", err)
	wantH, _ := r.Holder(ctx, w.holder.ID)
	if !reflect.DeepEqual(hh, wantH) || !reflect.DeepEqual(he, wantE) || !reflect.DeepEqual(hc, wantC) || hh.SSN != w.holder.SSN {
		t.Fatalf("ECardWithHolder = %+v %+v %+v, want %+v %+v %+v", hh, he, hc, wantH, wantE, wantC)
	}
	_, _, _, err = r.ECardWithHolder(ctx, "no-such-ecard")
	wantErr(t, "ECardWithHolder unknown", err, storage.ErrNotFound)
	stale := e
	stale.Status = storage.ECardActive
	err = r.Tx(ctx, func(tx storage.RegistryTx) error { _, err := tx.UpdateECard(ctx, stale); return err })
	wantErr(t, "stale UpdateECard", err, storage.ErrConflict)
	rev := susp
	rev.Status = storage.ECardRevoked
	mustTx(t, r, func(tx storage.RegistryTx) error { var err error; rev, err = tx.UpdateECard(ctx, rev); return err })
	if rev.RevokedAt.IsZero() {
		t.Fatal("revoked e-card without RevokedAt")
	}
	_, err = r.LiveECardOfCard(ctx, w.card.ID)
	wantErr(t, "LiveECardOfCard after revoke", err, storage.ErrNotFound)
	// After revocation a new live e-card is allowed (re-apply).
	mustTx(t, r, func(tx storage.RegistryTx) error {
		_, err := tx.CreateECard(ctx, storage.ECard{CardID: w.card.ID, HolderID: w.holder.ID, Level: 1})
		return err
	})
	all, err := r.ECardsOfHolder(ctx, w.holder.ID)
	noErr(t, "ECardsOfHolder", err)
	if len(all) != 2 {
		t.Fatalf("ECardsOfHolder = %d", len(all))
	}
	_, err = r.ECard(ctx, "nope")
	wantErr(t, "ECard unknown", err, storage.ErrNotFound)
}

func testConcurrentECard(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	w := seed(t, r, 9, "A00000011")
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.Tx(ctx, func(tx storage.RegistryTx) error {
				_, err := tx.CreateECard(ctx, storage.ECard{CardID: w.card.ID, HolderID: w.holder.ID, Level: 1})
				return err
			})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, storage.ErrDuplicate):
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d concurrent e-card applications won, want 1", wins)
	}
}

func testDevices(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	w := seed(t, r, 10, "A00000012")
	var e storage.ECard
	var d storage.Device
	jwk := []byte(`{"kty":"EC","crv":"SM2","x":"AA","y":"BB"}`)
	mustTx(t, r, func(tx storage.RegistryTx) error {
		var err error
		if e, err = tx.CreateECard(ctx, storage.ECard{CardID: w.card.ID, HolderID: w.holder.ID, Level: 1}); err != nil {
			return err
		}
		d, err = tx.AddDevice(ctx, storage.Device{ECardID: e.ID, Thumbprint: "tp1", PublicKeyJWK: jwk, Channel: "app"})
		return err
	})
	got, err := r.DeviceByThumbprint(ctx, "tp1")
	noErr(t, "DeviceByThumbprint", err)
	if got.ID != d.ID || string(got.PublicKeyJWK) != string(jwk) || got.Channel != "app" || !got.RevokedAt.IsZero() {
		t.Fatalf("device %+v", got)
	}
	gd, ge, gc, err := r.DeviceWithCard(ctx, "tp1")
	noErr(t, "DeviceWithCard", err)
	if gd.ID != d.ID || string(gd.PublicKeyJWK) != string(jwk) || gd.CreatedAt.IsZero() || ge.ID != e.ID || ge.Status != storage.ECardActive ||
		gc.ID != w.card.ID || gc.Number != "A00000012" || string(gc.PIN.Verifier) != "verifier-A00000012" {
		t.Fatalf("DeviceWithCard = %+v, %+v, %+v", gd, ge, gc)
	}
	_, _, _, err = r.DeviceWithCard(ctx, "tp-unknown")
	wantErr(t, "DeviceWithCard unknown", err, storage.ErrNotFound)
	err = r.Tx(ctx, func(tx storage.RegistryTx) error {
		_, err := tx.AddDevice(ctx, storage.Device{ECardID: e.ID, Thumbprint: "tp1", PublicKeyJWK: jwk, Channel: "app"})
		return err
	})
	wantErr(t, "duplicate live thumbprint", err, storage.ErrDuplicate)
	err = r.Tx(ctx, func(tx storage.RegistryTx) error {
		_, err := tx.AddDevice(ctx, storage.Device{ECardID: "nope", Thumbprint: "tp9", PublicKeyJWK: jwk})
		return err
	})
	wantErr(t, "device of unknown e-card", err, storage.ErrNotFound)
	mustTx(t, r, func(tx storage.RegistryTx) error { return tx.RevokeDevice(ctx, d.ID) })
	mustTx(t, r, func(tx storage.RegistryTx) error { return tx.RevokeDevice(ctx, d.ID) }) // idempotent
	err = r.Tx(ctx, func(tx storage.RegistryTx) error { return tx.RevokeDevice(ctx, "nope") })
	wantErr(t, "revoke unknown", err, storage.ErrNotFound)
	_, err = r.DeviceByThumbprint(ctx, "tp1")
	wantErr(t, "revoked thumbprint", err, storage.ErrNotFound)
	_, _, _, err = r.DeviceWithCard(ctx, "tp1")
	wantErr(t, "DeviceWithCard of a revoked device", err, storage.ErrNotFound)
	mustTx(t, r, func(tx storage.RegistryTx) error {
		_, err := tx.AddDevice(ctx, storage.Device{ECardID: e.ID, Thumbprint: "tp1", PublicKeyJWK: jwk, Channel: "app2"})
		return err
	})
	ds, err := r.Devices(ctx, e.ID)
	noErr(t, "Devices", err)
	if len(ds) != 2 || ds[0].RevokedAt.IsZero() || !ds[1].RevokedAt.IsZero() {
		t.Fatalf("Devices = %+v", ds)
	}
}

func testClients(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	c := storage.Client{
		ID: "portal", Name: "省网上办事大厅", Domain: "portal.example.gov.cn", Profile: storage.ProfileGM,
		AuthMethod: storage.AuthPrivateKeyJWT, JWKS: []byte(`{"keys":[]}`),
		RedirectURIs: []string{"https://portal.example.gov.cn/cb"}, GrantTypes: []string{"authorization_code", "refresh_token"},
		Scopes: []string{"openid", "profile"}, Purposes: []string{"portal_login"}, Sector: "portal.example.gov.cn",
		BackchannelLogoutURI: "https://portal.example.gov.cn/bcl", RequirePAR: true,
		Lifetimes: storage.Lifetimes{AccessToken: 5 * time.Minute}, IDTokenAlg: "SM2SM3",
	}
	var created storage.Client
	mustTx(t, r, func(tx storage.RegistryTx) error { var err error; created, err = tx.CreateClient(ctx, c); return err })
	got, err := r.Client(ctx, "portal")
	noErr(t, "Client", err)
	if got.Name != c.Name || got.Profile != "gm" || !got.RequirePAR || got.Lifetimes.AccessToken != 5*time.Minute ||
		len(got.RedirectURIs) != 1 || got.RedirectURIs[0] != c.RedirectURIs[0] || len(got.PostLogoutRedirectURIs) != 0 ||
		string(got.JWKS) != `{"keys":[]}` || got.Version != 1 || got.Disabled || got.IDTokenAlg != "SM2SM3" {
		t.Fatalf("Client = %+v", got)
	}
	for _, tc := range []struct {
		name string
		c    storage.Client
		want error
	}{
		{"fail/duplicate", c, storage.ErrDuplicate},
		{"fail/no_id", storage.Client{Profile: "intl"}, storage.ErrInvalidRecord},
		{"fail/bad_profile", storage.Client{ID: "x", Profile: "eu"}, storage.ErrInvalidRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Tx(ctx, func(tx storage.RegistryTx) error { _, err := tx.CreateClient(ctx, tc.c); return err })
			wantErr(t, "CreateClient", err, tc.want)
		})
	}
	_, err = r.Client(ctx, "nope")
	wantErr(t, "Client unknown", err, storage.ErrNotFound)
	dis := created
	dis.Disabled = true
	mustTx(t, r, func(tx storage.RegistryTx) error { var err error; dis, err = tx.UpdateClient(ctx, dis); return err })
	if !dis.Disabled || dis.Version != 2 {
		t.Fatalf("after disable %+v", dis)
	}
	err = r.Tx(ctx, func(tx storage.RegistryTx) error { _, err := tx.UpdateClient(ctx, created); return err })
	wantErr(t, "stale UpdateClient", err, storage.ErrConflict)
	mustTx(t, r, func(tx storage.RegistryTx) error {
		_, err := tx.CreateClient(ctx, storage.Client{ID: "agency", Profile: storage.ProfileIntl, AuthMethod: storage.AuthClientSecretBasic, SecretHash: []byte{1, 2}})
		return err
	})
	list, err := r.Clients(ctx, "", 10)
	noErr(t, "Clients", err)
	if len(list) != 2 || list[0].ID != "agency" || list[1].ID != "portal" {
		t.Fatalf("Clients = %d", len(list))
	}
	list, err = r.Clients(ctx, "agency", 10)
	noErr(t, "Clients page 2", err)
	if len(list) != 1 || list[0].ID != "portal" {
		t.Fatalf("Clients page 2 = %d", len(list))
	}
}

func testDelegations(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	p := seed(t, r, 11, "A00000013")
	a := seed(t, r, 12, "A00000014")
	var d storage.Delegation
	until := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	mustTx(t, r, func(tx storage.RegistryTx) error {
		var err error
		d, err = tx.CreateDelegation(ctx, storage.Delegation{PrincipalHolderID: p.holder.ID, AgentHolderID: a.holder.ID,
			Kind: storage.DelegationAgent, Scopes: []string{"certify"}, ValidUntil: until})
		return err
	})
	got, err := r.Delegation(ctx, d.ID)
	noErr(t, "Delegation", err)
	if got.Kind != "agent" || len(got.Scopes) != 1 || !got.ValidUntil.Equal(until) || got.ValidFrom.IsZero() || !got.RevokedAt.IsZero() {
		t.Fatalf("Delegation = %+v", got)
	}
	byAgent, err := r.DelegationsOfAgent(ctx, a.holder.ID)
	noErr(t, "DelegationsOfAgent", err)
	byPrincipal, err := r.DelegationsOfPrincipal(ctx, p.holder.ID)
	noErr(t, "DelegationsOfPrincipal", err)
	if len(byAgent) != 1 || len(byPrincipal) != 1 {
		t.Fatalf("by agent %d by principal %d", len(byAgent), len(byPrincipal))
	}
	mustTx(t, r, func(tx storage.RegistryTx) error { return tx.RevokeDelegation(ctx, d.ID) })
	got, _ = r.Delegation(ctx, d.ID)
	if got.RevokedAt.IsZero() {
		t.Fatal("not revoked")
	}
	for _, tc := range []struct {
		name string
		d    storage.Delegation
		want error
	}{
		{"fail/unknown_agent", storage.Delegation{PrincipalHolderID: p.holder.ID, AgentHolderID: "nope", Kind: "agent"}, storage.ErrNotFound},
		{"fail/bad_kind", storage.Delegation{PrincipalHolderID: p.holder.ID, AgentHolderID: a.holder.ID, Kind: "friend"}, storage.ErrInvalidRecord},
		{"fail/empty", storage.Delegation{Kind: "agent"}, storage.ErrInvalidRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Tx(ctx, func(tx storage.RegistryTx) error { _, err := tx.CreateDelegation(ctx, tc.d); return err })
			wantErr(t, "CreateDelegation", err, tc.want)
		})
	}
	err = r.Tx(ctx, func(tx storage.RegistryTx) error { return tx.RevokeDelegation(ctx, "nope") })
	wantErr(t, "RevokeDelegation unknown", err, storage.ErrNotFound)
}

var errBoom = errors.New("boom")

func testTxRollback(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	var hid, cid string
	err := r.Tx(ctx, func(tx storage.RegistryTx) error {
		h, err := tx.CreateHolder(ctx, storage.Holder{Name: "回滚", SSN: ssn(40)})
		if err != nil {
			return err
		}
		c, err := tx.CreateCard(ctx, storage.Card{HolderID: h.ID, Number: "R00000001", Region: "411301"})
		if err != nil {
			return err
		}
		// Reads inside the transaction see its writes.
		if _, err := tx.CardByNumber(ctx, "R00000001"); err != nil {
			return err
		}
		if _, err := tx.AppendEvent(ctx, storage.Event{Type: "card.issued", Aggregate: c.ID}); err != nil {
			return err
		}
		if _, err := tx.AppendAudit(ctx, storage.AuditEntry{Actor: "outlet", Action: "card.issue", Target: c.ID}); err != nil {
			return err
		}
		hid, cid = h.ID, c.ID
		return fmt.Errorf("domain said no: %w", errBoom)
	})
	wantErr(t, "Tx error passes through", err, errBoom)
	_, err = r.Holder(ctx, hid)
	wantErr(t, "holder after rollback", err, storage.ErrNotFound)
	_, err = r.Card(ctx, cid)
	wantErr(t, "card after rollback", err, storage.ErrNotFound)
	evs, err := r.Events(ctx, 0, 10)
	noErr(t, "Events", err)
	audit, err := r.AuditEntries(ctx, 0, 10)
	noErr(t, "AuditEntries", err)
	if len(evs) != 0 || len(audit) != 0 {
		t.Fatalf("rolled back tx left %d events and %d audit entries", len(evs), len(audit))
	}
	// The counters were rolled back too: the next seqs start at 1.
	mustTx(t, r, func(tx storage.RegistryTx) error {
		e, err := tx.AppendEvent(ctx, storage.Event{Type: "x"})
		if err == nil && e.Seq != 1 {
			return fmt.Errorf("seq %d after rollback, want 1", e.Seq)
		}
		return err
	})
}

func testOutbox(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		mustTx(t, r, func(tx storage.RegistryTx) error {
			e, err := tx.AppendEvent(ctx, storage.Event{Type: "card.lost", Aggregate: fmt.Sprint(i), Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
			if err == nil && e.Seq != int64(i) {
				return fmt.Errorf("seq %d want %d", e.Seq, i)
			}
			return err
		})
	}
	evs, err := r.Events(ctx, 2, 2)
	noErr(t, "Events", err)
	if len(evs) != 2 || evs[0].Seq != 3 || evs[1].Seq != 4 || string(evs[0].Payload) != `{"n":3}` || evs[0].At.IsZero() {
		t.Fatalf("Events(2,2) = %+v", evs)
	}
	c, err := r.Cursor(ctx, "backchannel")
	noErr(t, "Cursor", err)
	if c != 0 {
		t.Fatalf("fresh cursor %d", c)
	}
	noErr(t, "Advance", r.AdvanceCursor(ctx, "backchannel", 4))
	noErr(t, "Advance backwards", r.AdvanceCursor(ctx, "backchannel", 2))
	mustTx(t, r, func(tx storage.RegistryTx) error { return tx.AdvanceCursor(ctx, "tokens", 5) })
	for consumer, want := range map[string]int64{"backchannel": 4, "tokens": 5, "webhooks": 0} {
		got, err := r.Cursor(ctx, consumer)
		noErr(t, "Cursor", err)
		if got != want {
			t.Fatalf("cursor %s = %d want %d", consumer, got, want)
		}
	}
	err = r.Tx(ctx, func(tx storage.RegistryTx) error {
		_, err := tx.AppendEvent(ctx, storage.Event{Type: "x", Payload: json.RawMessage(`{not json`)})
		return err
	})
	wantErr(t, "bad payload", err, storage.ErrInvalidRecord)
	wantErr(t, "empty consumer", r.AdvanceCursor(ctx, "", 1), storage.ErrInvalidRecord)
}

func testOutboxConcurrent(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				err := r.Tx(ctx, func(tx storage.RegistryTx) error {
					_, err := tx.AppendEvent(ctx, storage.Event{Type: "t", Aggregate: fmt.Sprintf("%d-%d", w, i)})
					if err != nil {
						return err
					}
					_, err = tx.AppendAudit(ctx, storage.AuditEntry{Actor: "w", Action: "a", Target: fmt.Sprintf("%d-%d", w, i)})
					return err
				})
				if err != nil {
					t.Errorf("append: %v", err)
				}
			}
		}()
	}
	// A consumer reading while writers run never sees a gap it later has to go back for.
	var seen []int64
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var cursor int64
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		evs, err := r.Events(ctx, cursor, 1000)
		noErr(t, "Events", err)
		for _, e := range evs {
			seen = append(seen, e.Seq)
			cursor = e.Seq
		}
		if !finished {
			time.Sleep(time.Millisecond)
		}
	}
	evs, err := r.Events(ctx, cursor, 1000)
	noErr(t, "Events", err)
	for _, e := range evs {
		seen = append(seen, e.Seq)
	}
	if len(seen) != writers*each {
		t.Fatalf("consumer saw %d events, want %d", len(seen), writers*each)
	}
	for i, s := range seen {
		if s != int64(i+1) {
			t.Fatalf("event %d has seq %d: gap or reorder", i, s)
		}
	}
	rep, err := r.VerifyAudit(ctx)
	noErr(t, "VerifyAudit", err)
	if !rep.OK || rep.Entries != writers*each {
		t.Fatalf("audit after concurrent appends: %+v", rep)
	}
	// The same through the registry's own one-entry transactions (AppendAudit
	// outside Tx): concurrent appends must not fork the chain.
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := r.AppendAudit(ctx, storage.AuditEntry{Actor: "s", Action: "a", Target: fmt.Sprintf("%d-%d", w, i)}); err != nil {
					t.Errorf("AppendAudit: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	rep, err = r.VerifyAudit(ctx)
	noErr(t, "VerifyAudit", err)
	if !rep.OK || rep.Entries != 2*writers*each {
		t.Fatalf("audit after concurrent one-entry appends: %+v", rep)
	}
}

func testAudit(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	rep, err := r.VerifyAudit(ctx)
	noErr(t, "VerifyAudit empty", err)
	if !rep.OK || rep.Entries != 0 {
		t.Fatalf("empty log: %+v", rep)
	}
	e1, err := r.AppendAudit(ctx, storage.AuditEntry{Actor: "outlet-1", Action: "card.report_loss", Target: "c1", Details: json.RawMessage(`{"channel":"counter"}`)})
	noErr(t, "AppendAudit", err)
	var e2 storage.AuditEntry
	mustTx(t, r, func(tx storage.RegistryTx) error {
		var err error
		e2, err = tx.AppendAudit(ctx, storage.AuditEntry{Actor: "agent-h", Act: "holder-p", Action: "ecard.certify", Target: "e1"})
		return err
	})
	if e1.Seq != 1 || e2.Seq != 2 || len(e1.Prev) != 0 || string(e2.Prev) != string(e1.Chain) || len(e2.Chain) != 32 {
		t.Fatalf("chain fields: e1 %+v e2 %+v", e1, e2)
	}
	list, err := r.AuditEntries(ctx, 0, 10)
	noErr(t, "AuditEntries", err)
	if len(list) != 2 || list[1].Act != "holder-p" || string(list[0].Details) != `{"channel":"counter"}` || !list[0].At.Equal(e1.At) {
		t.Fatalf("AuditEntries = %+v", list)
	}
	rep, err = r.VerifyAudit(ctx)
	noErr(t, "VerifyAudit", err)
	if !rep.OK || rep.Entries != 2 {
		t.Fatalf("VerifyAudit = %+v", rep)
	}
	_, err = r.AppendAudit(ctx, storage.AuditEntry{Actor: "x"})
	wantErr(t, "audit without action", err, storage.ErrInvalidRecord)
}

func testAuditTamper(t *testing.T, newDB NewDB) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		tamper   []string // raw SQL statements
		firstBad int64
	}{
		{"fail/modified_action", []string{`UPDATE audit_log SET action = 'card.unfreeze' WHERE seq = 3`}, 3},
		{"fail/modified_actor", []string{`UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2`}, 2},
		{"fail/modified_time", []string{`UPDATE audit_log SET at = at + 1000000 WHERE seq = 4`}, 4},
		{"fail/deleted_middle", []string{`DELETE FROM audit_log WHERE seq = 3`}, 4},
		{"fail/deleted_tail", []string{`DELETE FROM audit_log WHERE seq = 5`}, 5},
		{"fail/deleted_first", []string{`DELETE FROM audit_log WHERE seq = 1`}, 2},
		{"fail/reordered", []string{`UPDATE audit_log SET seq = -2 WHERE seq = 2`, `UPDATE audit_log SET seq = 2 WHERE seq = 3`,
			`UPDATE audit_log SET seq = 3 WHERE seq = -2`}, 2},
		{"fail/tail_deleted_and_head_rewound", []string{`DELETE FROM audit_log WHERE seq = 5`,
			`UPDATE audit_head SET seq = 4, chain = (SELECT chain FROM audit_log WHERE seq = 4)`}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Each case gets its own database.
			r := newDB(t)(t)
			rs := raw(t, r)
			for i := 1; i <= 5; i++ {
				_, err := r.AppendAudit(ctx, storage.AuditEntry{Actor: "outlet", Action: "card.report_loss", Target: fmt.Sprintf("c%d", i)})
				noErr(t, "AppendAudit", err)
			}
			rep, err := r.VerifyAudit(ctx)
			noErr(t, "VerifyAudit before", err)
			if !rep.OK {
				t.Fatalf("untampered log fails: %+v", rep)
			}
			for _, stmt := range tc.tamper {
				if _, err := rs.DB().Exec(stmt); err != nil {
					t.Fatalf("tamper %q: %v", stmt, err)
				}
			}
			rep, err = r.VerifyAudit(ctx)
			noErr(t, "VerifyAudit after", err)
			if tc.firstBad == 0 {
				// An attacker with write access to the database who also rewinds the
				// head is NOT detectable by the chain alone (documented limit: anchor
				// the head externally). Assert the limit so a change is noticed.
				if !rep.OK || rep.Entries != 4 {
					t.Fatalf("rewound head: %+v", rep)
				}
				return
			}
			if rep.OK || rep.FirstBad != tc.firstBad || rep.Reason == "" {
				t.Fatalf("tampered log: %+v, want first bad %d", rep, tc.firstBad)
			}
		})
	}
}

func testImport(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	ctx := context.Background()
	existing := seed(t, r, 0, "I00000000") // card number already present before the import
	const n = 1200
	rows := make([]storage.CardImport, n)
	for i := range n {
		rows[i] = storage.CardImport{Line: i + 2, SSN: ssn(i / 2), Name: fmt.Sprintf("持卡人%d", i/2),
			Number: fmt.Sprintf("I%08d", i), Region: "411301", IssuedOn: time.Date(2019, 1, 2, 0, 0, 0, 0, time.UTC),
			PINVerifier: []byte{byte(i)}}
	}
	rows = append(rows, storage.CardImport{Line: n + 2, SSN: ssn(5000), Name: "重号", Number: "I00000005", Region: "411301"})
	res, err := r.ImportCards(ctx, rows)
	noErr(t, "ImportCards", err)
	// Two cards per holder; holder 0 (ssn(0)) already existed; I00000000 and the
	// in-file duplicate I00000005 are skipped.
	if res.Inserted != n-1 || res.HoldersCreated != n/2-1+1 || len(res.Skipped) != 2 || res.Skipped[0] != 2 || res.Skipped[1] != n+2 {
		t.Fatalf("first import: inserted %d holders %d skipped %v", res.Inserted, res.HoldersCreated, res.Skipped)
	}
	res, err = r.ImportCards(ctx, rows)
	noErr(t, "ImportCards again", err)
	if res.Inserted != 0 || res.HoldersCreated != 0 || len(res.Skipped) != len(rows) {
		t.Fatalf("second import not idempotent: inserted %d holders %d skipped %d", res.Inserted, res.HoldersCreated, len(res.Skipped))
	}
	h, err := r.HolderBySSN(ctx, ssn(17))
	noErr(t, "HolderBySSN imported", err)
	if h.SSN != ssn(17) || h.Name != "持卡人17" {
		t.Fatalf("imported holder %+v", h)
	}
	cs, err := r.CardsOfHolder(ctx, h.ID)
	noErr(t, "CardsOfHolder", err)
	if len(cs) != 2 || cs[0].Status != storage.CardActive || !cs[0].PIN.MustChange || cs[0].Version != 1 {
		t.Fatalf("imported cards %+v", cs)
	}
	c, err := r.CardByNumber(ctx, "I00000001")
	noErr(t, "CardByNumber", err)
	if c.HolderID != existing.holder.ID || len(c.PIN.Verifier) != 1 || c.PIN.Verifier[0] != 1 {
		t.Fatalf("card for an existing holder: %+v", c)
	}
	_, err = r.ImportCards(ctx, []storage.CardImport{{Line: 1, Number: "X1"}})
	wantErr(t, "row without SSN", err, storage.ErrInvalidRecord)
}

func testClosed(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	noErr(t, "Close", r.Close())
	_, err := r.Card(context.Background(), "x")
	wantErr(t, "Card after Close", err, storage.ErrUnavailable)
	wantErr(t, "Ping after Close", r.Ping(context.Background()), storage.ErrUnavailable)
	err = r.Tx(context.Background(), func(storage.RegistryTx) error { return nil })
	wantErr(t, "Tx after Close", err, storage.ErrUnavailable)
}

// testConsents: remembered grants are per holder and client, the union of
// what was granted, idempotent, audited only when something is new, and
// bad input is refused without writing.
func testConsents(t *testing.T, open func(t *testing.T) storage.Registry) {
	r := open(t)
	c, ok := r.(storage.Consents)
	if !ok {
		t.Skip("registry does not remember consent")
	}
	ctx := context.Background()
	got, err := c.Granted(ctx, "h1", "portal")
	noErr(t, "Granted none", err)
	if got != nil {
		t.Fatalf("Granted before any grant = %v", got)
	}
	noErr(t, "Grant", c.Grant(ctx, "h1", "portal", []string{"profile", "essc.card"}))
	noErr(t, "Grant more", c.Grant(ctx, "h1", "portal", []string{"essc.card", "phone"}))
	before, err := r.AuditEntries(ctx, 0, 1000)
	noErr(t, "AuditEntries", err)
	noErr(t, "Grant again", c.Grant(ctx, "h1", "portal", []string{"phone", "profile"}))
	after, _ := r.AuditEntries(ctx, 0, 1000)
	if len(after) != len(before) || len(before) != 2 {
		t.Fatalf("audit entries %d then %d, want 2 and 2 (a grant with nothing new writes nothing)", len(before), len(after))
	}
	got, err = c.Granted(ctx, "h1", "portal")
	noErr(t, "Granted", err)
	if !reflect.DeepEqual(got, []string{"essc.card", "phone", "profile"}) {
		t.Fatalf("Granted = %v", got)
	}
	if other, _ := c.Granted(ctx, "h1", "other-portal"); other != nil {
		t.Fatalf("grant leaked to another client: %v", other)
	}
	if other, _ := c.Granted(ctx, "h2", "portal"); other != nil {
		t.Fatalf("grant leaked to another holder: %v", other)
	}
	wantErr(t, "fail/empty holder", c.Grant(ctx, "", "portal", []string{"profile"}), storage.ErrInvalidRecord)
	wantErr(t, "fail/empty client", c.Grant(ctx, "h1", "", []string{"profile"}), storage.ErrInvalidRecord)
	wantErr(t, "fail/scope with a space", c.Grant(ctx, "h1", "portal", []string{"a b"}), storage.ErrInvalidRecord)
	if got, _ := c.Granted(ctx, "h1", "portal"); len(got) != 3 {
		t.Fatalf("refused grant changed the record: %v", got)
	}
	testECardWithCardAndGrant(t, r)
	rep, err := r.VerifyAudit(ctx)
	if err != nil || !rep.OK {
		t.Fatalf("audit chain: %+v %v", rep, err)
	}
}

// testECardWithCardAndGrant: the completion's read returns what
// ECardWithCard returns and the grant of the e-card's own holder to that
// client only.
func testECardWithCardAndGrant(t *testing.T, r storage.Registry) {
	cw, ok := r.(storage.ConsentsWithCards)
	if !ok {
		return
	}
	ctx := context.Background()
	w, e := seedECard(t, r, 40, "A00000040")
	wantE, wantC, err := r.ECardWithCard(ctx, e.ID)
	noErr(t, "ECardWithCard", err)
	ge, gc, granted, err := cw.ECardWithCardAndGrant(ctx, e.ID, "portal")
	noErr(t, "ECardWithCardAndGrant", err)
	if !reflect.DeepEqual(ge, wantE) || !reflect.DeepEqual(gc, wantC) || granted != nil {
		t.Fatalf("ECardWithCardAndGrant before a grant = %+v %+v %v, want %+v %+v nil (h1's grant to portal is not this holder's)", ge, gc, granted, wantE, wantC)
	}
	noErr(t, "Grant", cw.Grant(ctx, w.holder.ID, "portal", []string{"profile", "essc.card"}))
	if _, _, granted, err = cw.ECardWithCardAndGrant(ctx, e.ID, "portal"); err != nil || !reflect.DeepEqual(granted, []string{"essc.card", "profile"}) {
		t.Fatalf("ECardWithCardAndGrant after a grant = %v, %v", granted, err)
	}
	if _, _, granted, err = cw.ECardWithCardAndGrant(ctx, e.ID, "other-portal"); err != nil || granted != nil {
		t.Fatalf("ECardWithCardAndGrant for another client = %v, %v", granted, err)
	}
	_, _, _, err = cw.ECardWithCardAndGrant(ctx, "no-such-ecard", "portal")
	wantErr(t, "fail/unknown e-card", err, storage.ErrNotFound)
}
