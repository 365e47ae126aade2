package card_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // test-only: the "pgx" driver for schema setup

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/storage"
	"github.com/essc-project/essc/storage/registrytest"
	essql "github.com/essc-project/essc/storage/sql"
)

// env is one service over one fresh database.
type env struct {
	svc    *card.Service
	reg    storage.Registry
	now    time.Time
	reopen func(t *testing.T) *env // a new process on the same database
}

var testNow = time.Date(2026, 6, 15, 2, 0, 0, 0, time.UTC)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnv(t *testing.T, url string, secrets essql.Secrets) *env {
	t.Helper()
	reg, err := essql.Open(context.Background(), essql.Config{URL: url, Secrets: secrets, Logger: quiet(),
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatalf("open registry: %v", err)
	}
	t.Cleanup(func() { reg.Close() })
	svc, err := card.New(card.Config{Registry: reg, PINKey: secrets.PINKey, Logger: quiet(),
		Now: func() time.Time { return testNow }, MaxDevices: 2})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{svc: svc, reg: reg, now: testNow}
	e.reopen = func(t *testing.T) *env { return newEnv(t, url, secrets) }
	return e
}

// backends runs fn on SQLite always and on PostgreSQL when
// ESSC_TEST_DATABASE_URL is set (a fresh schema each time).
func backends(t *testing.T, fn func(t *testing.T, newEnv func(t *testing.T) *env)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, func(t *testing.T) *env {
			secrets, err := essql.LoadOrCreateSecrets(filepath.Join(t.TempDir(), "keys"))
			if err != nil {
				t.Fatal(err)
			}
			return newEnv(t, "sqlite://"+filepath.Join(t.TempDir(), "registry.db"), secrets)
		})
	})
	t.Run("postgres", func(t *testing.T) {
		url := os.Getenv("ESSC_TEST_DATABASE_URL")
		if url == "" {
			t.Skip("ESSC_TEST_DATABASE_URL not set: PostgreSQL card tests skipped")
		}
		fn(t, func(t *testing.T) *env {
			secrets, err := essql.LoadOrCreateSecrets(filepath.Join(t.TempDir(), "keys"))
			if err != nil {
				t.Fatal(err)
			}
			return newEnv(t, pgSchema(t, url), secrets)
		})
	})
}

func pgSchema(t *testing.T, url string) string { return registrytest.PostgresSchema(t, url) }

func ssn(region, birth, seq string) string {
	s := region + birth + seq
	return s + string(card.SSNCheckChar(s))
}

var (
	outlet   = card.Actor{ID: "outlet-410100-01"}
	outlet2  = card.Actor{ID: "outlet-410100-02"}
	aliceSSN = ssn("411302", "19560314", "121")
	bobSSN   = ssn("411302", "19880505", "232")
	kidSSN   = ssn("411302", "20150707", "343")
)

func (e *env) issue(t *testing.T, ssn, name, number string) card.Issued {
	t.Helper()
	is, err := e.svc.IssueCard(context.Background(), outlet, card.IssueRequest{SSN: ssn, Name: name, Number: number, Region: "411302"})
	if err != nil {
		t.Fatalf("IssueCard: %v", err)
	}
	return is
}

// ready issues a card, changes the initial PIN to pin and applies for an e-card.
func (e *env) ready(t *testing.T, ssn, name, number, pin string) card.Grant {
	t.Helper()
	ctx := context.Background()
	e.issue(t, ssn, name, number)
	if err := e.svc.ChangePIN(ctx, card.Actor{}, number, card.InitialPIN, pin); err != nil {
		t.Fatalf("ChangePIN: %v", err)
	}
	g, err := e.svc.ApplyECard(ctx, card.Actor{}, card.ApplyRequest{CardNumber: number, SSN: ssn, Name: name, PIN: pin,
		Device: device("dev-" + number)})
	if err != nil {
		t.Fatalf("ApplyECard: %v", err)
	}
	return g
}

// card reads the card with this number straight from the registry.
func (e *env) card(t *testing.T, number string) storage.Card {
	t.Helper()
	c, err := e.reg.CardByNumber(context.Background(), number)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func device(tp string) card.DeviceKey {
	return card.DeviceKey{Thumbprint: tp, PublicKeyJWK: []byte(`{"kty":"EC","crv":"SM2","x":"AA","y":"BB"}`), Channel: "provincial-app"}
}

func eventTypes(t *testing.T, reg storage.Registry, after int64) []string {
	t.Helper()
	evs, err := reg.Events(context.Background(), after, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func lastSeq(t *testing.T, reg storage.Registry) int64 {
	t.Helper()
	evs, err := reg.Events(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

func auditActions(t *testing.T, reg storage.Registry) []string {
	t.Helper()
	es, err := reg.AuditEntries(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Action)
		if strings.Contains(string(e.Details), aliceSSN) || strings.Contains(string(e.Details), "A00000001") {
			t.Fatalf("audit entry %d carries PII: %s", e.Seq, e.Details)
		}
	}
	return out
}

func TestLifecyclePropagation(t *testing.T) {
	backends(t, func(t *testing.T, mk func(*testing.T) *env) {
		ctx := context.Background()
		e := mk(t)
		g := e.ready(t, aliceSSN, "张秀英", "A00000001", "730591")
		if g.ECard.Status != storage.ECardActive || g.ECard.Level != 1 || g.Device.Thumbprint != "dev-A00000001" {
			t.Fatalf("grant = %+v", g)
		}
		ref := card.CardRef{Number: "A00000001"}

		t.Run("ok/report-loss-suspends-ecard", func(t *testing.T) {
			seq := lastSeq(t, e.reg)
			c, err := e.svc.ReportLoss(ctx, outlet, ref)
			if err != nil || c.Status != storage.CardLost {
				t.Fatalf("ReportLoss = %v, %v", c.Status, err)
			}
			ec, _, _ := e.svc.ECard(ctx, g.ECard.ID)
			if ec.Status != storage.ECardSuspended {
				t.Fatalf("e-card %s", ec.Status)
			}
			want := []string{card.EventCardLost, card.EventECardSuspended, card.EventRevokeTokens, card.EventBackchannelLogout}
			if got := eventTypes(t, e.reg, seq); !slices.Equal(got, want) {
				t.Fatalf("events %v, want %v", got, want)
			}
		})
		t.Run("fail/apply-on-lost-card", func(t *testing.T) {
			_, err := e.svc.ApplyECard(ctx, card.Actor{}, card.ApplyRequest{CardNumber: "A00000001", SSN: aliceSSN, Name: "张秀英", PIN: "730591", Device: device("x")})
			var te *card.TransitionError
			if !errors.As(err, &te) || te.From != string(storage.CardLost) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("fail/verify-pin-on-lost-card-is-uniform", func(t *testing.T) {
			if _, err := e.svc.VerifyPIN(ctx, "A00000001", "730591"); !errors.Is(err, card.ErrAuthFailed) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("fail/report-loss-twice", func(t *testing.T) {
			if _, err := e.svc.ReportLoss(ctx, outlet, ref); !errors.Is(err, card.ErrForbiddenTransition) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("ok/unfreeze-resumes-ecard", func(t *testing.T) {
			seq := lastSeq(t, e.reg)
			c, err := e.svc.Unfreeze(ctx, outlet, ref)
			if err != nil || c.Status != storage.CardActive {
				t.Fatalf("Unfreeze = %v, %v", c.Status, err)
			}
			ec, _, _ := e.svc.ECard(ctx, g.ECard.ID)
			if ec.Status != storage.ECardActive {
				t.Fatalf("e-card %s", ec.Status)
			}
			if got := eventTypes(t, e.reg, seq); !slices.Equal(got, []string{card.EventCardUnfrozen, card.EventECardResumed}) {
				t.Fatalf("events %v", got)
			}
		})
		t.Run("fail/unfreeze-active", func(t *testing.T) {
			if _, err := e.svc.Unfreeze(ctx, outlet, ref); !errors.Is(err, card.ErrForbiddenTransition) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("fail/second-live-ecard", func(t *testing.T) {
			_, err := e.svc.ApplyECard(ctx, card.Actor{}, card.ApplyRequest{CardNumber: "A00000001", SSN: aliceSSN, Name: "张秀英", PIN: "730591", Device: device("other")})
			if !errors.Is(err, card.ErrExists) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("fail/bad-cancel-reason", func(t *testing.T) {
			if _, err := e.svc.Cancel(ctx, outlet, ref, "bored"); !errors.Is(err, card.ErrInvalidRequest) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("ok/cancel-death-revokes-and-terminates", func(t *testing.T) {
			seq := lastSeq(t, e.reg)
			c, err := e.svc.Cancel(ctx, outlet, ref, storage.CancelDeath)
			if err != nil || c.Status != storage.CardCancelled || c.CancelReason != storage.CancelDeath {
				t.Fatalf("Cancel = %+v, %v", c, err)
			}
			ec, _, _ := e.svc.ECard(ctx, g.ECard.ID)
			if ec.Status != storage.ECardRevoked || ec.RevokedAt.IsZero() {
				t.Fatalf("e-card %+v", ec)
			}
			want := []string{card.EventCardCancelled, card.EventECardRevoked, card.EventRevokeTokens, card.EventBackchannelLogout, card.EventEntitlementTerminate}
			if got := eventTypes(t, e.reg, seq); !slices.Equal(got, want) {
				t.Fatalf("events %v, want %v", got, want)
			}
		})
		for _, tc := range []struct {
			name string
			do   func() error
		}{
			{"fail/unfreeze-cancelled", func() error { _, err := e.svc.Unfreeze(ctx, outlet, ref); return err }},
			{"fail/report-loss-cancelled", func() error { _, err := e.svc.ReportLoss(ctx, outlet, ref); return err }},
			{"fail/cancel-cancelled", func() error { _, err := e.svc.Cancel(ctx, outlet, ref, storage.CancelOther); return err }},
			{"fail/replace-cancelled", func() error {
				_, err := e.svc.Replace(ctx, outlet, ref, card.ReplaceRequest{NewNumber: "A00000009"})
				return err
			}},
			{"fail/unlock-cancelled", func() error { _, err := e.svc.UnlockPIN(ctx, outlet, ref); return err }},
			{"fail/reset-cancelled", func() error { _, err := e.svc.ResetPIN(ctx, outlet, ref); return err }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := tc.do(); !errors.Is(err, card.ErrForbiddenTransition) {
					t.Fatalf("err = %v", err)
				}
			})
		}
		t.Run("ok/audit-chain", func(t *testing.T) {
			got := auditActions(t, e.reg)
			want := []string{"card.issue", "pin.change", "ecard.apply", "card.report_loss", "pin.verify_refused", "card.unfreeze", "card.cancel"}
			if !slices.Equal(got, want) {
				t.Fatalf("audit %v, want %v", got, want)
			}
			rep, err := e.reg.VerifyAudit(ctx)
			if err != nil || !rep.OK || rep.Entries != int64(len(want)) {
				t.Fatalf("VerifyAudit = %+v, %v", rep, err)
			}
			es, _ := e.reg.AuditEntries(ctx, 0, 10)
			if es[0].Actor != outlet.ID || es[3].Actor != outlet.ID {
				t.Fatalf("actors %q %q", es[0].Actor, es[3].Actor)
			}
		})
	})
}

func TestReplaceKeepsHolder(t *testing.T) {
	backends(t, func(t *testing.T, mk func(*testing.T) *env) {
		ctx := context.Background()
		e := mk(t)
		g := e.ready(t, bobSSN, "李明", "B00000001", "730591")
		seq := lastSeq(t, e.reg)
		is, err := e.svc.Replace(ctx, outlet, card.CardRef{Number: "B00000001"}, card.ReplaceRequest{NewNumber: "b00000002"})
		if err != nil {
			t.Fatal(err)
		}
		if is.Holder.ID != g.Holder.ID || is.Card.Number != "B00000002" || !is.Card.PIN.MustChange || is.Card.Status != storage.CardActive {
			t.Fatalf("new card %+v holder %s want %s", is.Card, is.Holder.ID, g.Holder.ID)
		}
		old, _ := e.svc.Card(ctx, "B00000001")
		if old.Card.Status != storage.CardReplaced || old.ECard != nil {
			t.Fatalf("old card %s, live e-card %v", old.Card.Status, old.ECard)
		}
		want := []string{card.EventECardRevoked, card.EventRevokeTokens, card.EventBackchannelLogout, card.EventCardIssued, card.EventCardReplaced}
		got := eventTypes(t, e.reg, seq)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("events %v, want %v", got, want)
		}
		// The holder re-applies on the new card: same holder id, new e-card.
		if err := e.svc.ChangePIN(ctx, card.Actor{}, "B00000002", card.InitialPIN, "730592"); err != nil {
			t.Fatal(err)
		}
		g2, err := e.svc.ApplyECard(ctx, card.Actor{}, card.ApplyRequest{CardNumber: "B00000002", SSN: bobSSN, Name: "李明", PIN: "730592", Device: device("dev-new")})
		if err != nil || g2.Holder.ID != g.Holder.ID || g2.ECard.ID == g.ECard.ID {
			t.Fatalf("re-apply: %+v %v", g2, err)
		}
		for name, do := range map[string]func() error{
			"fail/replace-replaced": func() error {
				_, err := e.svc.Replace(ctx, outlet, card.CardRef{Number: "B00000001"}, card.ReplaceRequest{NewNumber: "B00000003"})
				return err
			},
			"fail/unfreeze-replaced": func() error { _, err := e.svc.Unfreeze(ctx, outlet, card.CardRef{Number: "B00000001"}); return err },
			"fail/cancel-replaced": func() error {
				_, err := e.svc.Cancel(ctx, outlet, card.CardRef{Number: "B00000001"}, storage.CancelOther)
				return err
			},
		} {
			t.Run(name, func(t *testing.T) {
				if err := do(); !errors.Is(err, card.ErrForbiddenTransition) {
					t.Fatalf("err = %v", err)
				}
			})
		}
		t.Run("fail/replace-onto-existing-number", func(t *testing.T) {
			_, err := e.svc.Replace(ctx, outlet, card.CardRef{Number: "B00000002"}, card.ReplaceRequest{NewNumber: "B00000001"})
			if !errors.Is(err, card.ErrExists) {
				t.Fatalf("err = %v", err)
			}
			c, _ := e.svc.Card(ctx, "B00000002")
			if c.Card.Status != storage.CardActive {
				t.Fatal("failed replace was not rolled back")
			}
		})
	})
}

func TestIssueRules(t *testing.T) {
	backends(t, func(t *testing.T, mk func(*testing.T) *env) {
		ctx := context.Background()
		e := mk(t)
		e.issue(t, aliceSSN, "张秀英", "A00000001")
		tests := []struct {
			name string
			req  card.IssueRequest
			want error
		}{
			{"fail/second-live-card", card.IssueRequest{SSN: aliceSSN, Name: "张秀英", Number: "A00000002", Region: "411302"}, card.ErrExists},
			{"fail/duplicate-number", card.IssueRequest{SSN: bobSSN, Name: "李明", Number: "A00000001", Region: "411302"}, card.ErrExists},
			{"fail/name-mismatch", card.IssueRequest{SSN: aliceSSN, Name: "王五", Number: "A00000003", Region: "411302"}, card.ErrMismatch},
			{"fail/bad-ssn", card.IssueRequest{SSN: aliceSSN[:17] + "0", Name: "x", Number: "A00000004", Region: "411302"}, card.ErrInvalidSSN},
			{"fail/bad-number", card.IssueRequest{SSN: bobSSN, Name: "李明", Number: "A-1", Region: "411302"}, card.ErrInvalidCardNumber},
			{"fail/bad-region", card.IssueRequest{SSN: bobSSN, Name: "李明", Number: "A00000005", Region: "991302"}, card.ErrInvalidRegion},
			{"fail/empty-name", card.IssueRequest{SSN: bobSSN, Name: " ", Number: "A00000006", Region: "411302"}, card.ErrInvalidName},
			{"fail/control-in-name", card.IssueRequest{SSN: bobSSN, Name: "李\n明", Number: "A00000007", Region: "411302"}, card.ErrInvalidName},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if _, err := e.svc.IssueCard(ctx, outlet, tt.req); !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
			})
		}
		t.Run("ok/reissue-after-cancel", func(t *testing.T) {
			if _, err := e.svc.Cancel(ctx, outlet, card.CardRef{Number: "A00000001"}, storage.CancelOther); err != nil {
				t.Fatal(err)
			}
			e.issue(t, aliceSSN, "张秀英", "A00000008")
		})
		t.Run("fail/not-found", func(t *testing.T) {
			if _, err := e.svc.ReportLoss(ctx, outlet, card.CardRef{Number: "Z99999999"}); !errors.Is(err, card.ErrNotFound) {
				t.Fatalf("err = %v", err)
			}
			if _, err := e.svc.Card(ctx, "Z99999999"); !errors.Is(err, card.ErrNotFound) {
				t.Fatalf("err = %v", err)
			}
		})
	})
}

func TestPINLifecycle(t *testing.T) {
	backends(t, func(t *testing.T, mk func(*testing.T) *env) {
		ctx := context.Background()
		e := mk(t)
		e.issue(t, aliceSSN, "张秀英", "A00000001")
		t.Run("fail/initial-pin-must-change", func(t *testing.T) {
			v, err := e.svc.VerifyPIN(ctx, "A00000001", card.InitialPIN)
			if !errors.Is(err, card.ErrMustChangePIN) || !v.MustChange {
				t.Fatalf("VerifyPIN = %+v, %v", v.MustChange, err)
			}
			if err := card.CheckIssuable(v.Card); !errors.Is(err, card.ErrMustChangePIN) {
				t.Fatalf("CheckIssuable = %v", err)
			}
			_, err = e.svc.ApplyECard(ctx, card.Actor{}, card.ApplyRequest{CardNumber: "A00000001", SSN: aliceSSN, Name: "张秀英", PIN: card.InitialPIN, Device: device("d")})
			if !errors.Is(err, card.ErrMustChangePIN) {
				t.Fatalf("ApplyECard = %v", err)
			}
		})
		for _, weak := range []string{"123456", "111111", "345678", "560314", "031499"} {
			t.Run("fail/weak-"+weak, func(t *testing.T) {
				if err := e.svc.ChangePIN(ctx, card.Actor{}, "A00000001", card.InitialPIN, weak); !errors.Is(err, card.ErrWeakPIN) {
					t.Fatalf("err = %v", err)
				}
			})
		}
		t.Run("fail/change-with-wrong-old", func(t *testing.T) {
			if err := e.svc.ChangePIN(ctx, card.Actor{}, "A00000001", "999990", "730591"); !errors.Is(err, card.ErrAuthFailed) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("ok/change-then-verify", func(t *testing.T) {
			if err := e.svc.ChangePIN(ctx, card.Actor{}, "A00000001", card.InitialPIN, "730591"); err != nil {
				t.Fatal(err)
			}
			v, err := e.svc.VerifyPIN(ctx, "A00000001", "730591")
			if err != nil || v.MustChange || card.CheckIssuable(v.Card) != nil || v.Holder.SSN != aliceSSN {
				t.Fatalf("VerifyPIN = %+v, %v", v, err)
			}
		})
		t.Run("fail/same-as-old", func(t *testing.T) {
			if err := e.svc.ChangePIN(ctx, card.Actor{}, "A00000001", "730591", "730591"); !errors.Is(err, card.ErrPINUnchanged) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("fail/uniform-errors", func(t *testing.T) {
			for _, n := range []string{"Z99999999", "bad", ""} {
				if _, err := e.svc.VerifyPIN(ctx, n, "730591"); err != card.ErrAuthFailed {
					t.Fatalf("%q: err = %v", n, err)
				}
			}
		})
		t.Run("fail/lockout-survives-restart", func(t *testing.T) {
			for i := 0; i < 4; i++ {
				if _, err := e.svc.VerifyPIN(ctx, "A00000001", "000001"); err != card.ErrAuthFailed {
					t.Fatalf("attempt %d: %v", i, err)
				}
			}
			// A correct PIN before the fifth failure resets the counter…
			if _, err := e.svc.VerifyPIN(ctx, "A00000001", "730591"); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 5; i++ {
				e.svc.VerifyPIN(ctx, "A00000001", "000001")
			}
			// …the fifth consecutive failure locks: the right PIN fails, identically.
			if _, err := e.svc.VerifyPIN(ctx, "A00000001", "730591"); err != card.ErrAuthFailed {
				t.Fatalf("locked: %v", err)
			}
			e2 := e.reopen(t)
			if _, err := e2.svc.VerifyPIN(ctx, "A00000001", "730591"); err != card.ErrAuthFailed {
				t.Fatalf("after restart: %v", err)
			}
			c, _ := e2.svc.Card(ctx, "A00000001")
			if !c.Card.PIN.Locked {
				t.Fatal("not locked in the registry")
			}
			if got := eventTypes(t, e2.reg, 0); !slices.Contains(got, card.EventPINLocked) {
				t.Fatalf("no pin.locked event: %v", got)
			}
			if _, err := e2.svc.UnlockPIN(ctx, outlet, card.CardRef{Number: "A00000001"}); err != nil {
				t.Fatal(err)
			}
			if _, err := e2.svc.VerifyPIN(ctx, "A00000001", "730591"); err != nil {
				t.Fatalf("after unlock: %v", err)
			}
		})
		t.Run("ok/reset-requires-change", func(t *testing.T) {
			if _, err := e.svc.ResetPIN(ctx, outlet, card.CardRef{Number: "A00000001"}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.svc.VerifyPIN(ctx, "A00000001", "730591"); err != card.ErrAuthFailed {
				t.Fatalf("old PIN after reset: %v", err)
			}
			if _, err := e.svc.VerifyPIN(ctx, "A00000001", card.InitialPIN); !errors.Is(err, card.ErrMustChangePIN) {
				t.Fatalf("initial after reset: %v", err)
			}
		})
		t.Run("ok/audited", func(t *testing.T) {
			got := auditActions(t, e.reg)
			for _, a := range []string{"pin.change", "pin.verify_failed", "pin.locked", "pin.unlock", "pin.reset"} {
				if !slices.Contains(got, a) {
					t.Fatalf("audit lacks %s: %v", a, got)
				}
			}
		})
	})
}

func TestConcurrentOutlets(t *testing.T) {
	backends(t, func(t *testing.T, mk func(*testing.T) *env) {
		ctx := context.Background()
		e := mk(t)
		e.issue(t, aliceSSN, "张秀英", "A00000001")
		for round := 0; round < 3; round++ {
			view, err := e.svc.Card(ctx, "A00000001")
			if err != nil {
				t.Fatal(err)
			}
			ref := card.CardRef{Number: "A00000001", Version: view.Card.Version}
			actions := []func(card.Actor) error{
				func(a card.Actor) error { _, err := e.svc.ResetPIN(ctx, a, ref); return err },
				func(a card.Actor) error { _, err := e.svc.UnlockPIN(ctx, a, ref); return err },
			}
			if view.Card.Status == storage.CardActive {
				actions = append(actions, func(a card.Actor) error { _, err := e.svc.ReportLoss(ctx, a, ref); return err })
			} else {
				actions = append(actions, func(a card.Actor) error { _, err := e.svc.Unfreeze(ctx, a, ref); return err })
			}
			var wg sync.WaitGroup
			errs := make([]error, 2*len(actions))
			start := make(chan struct{})
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					errs[i] = actions[i%len(actions)]([]card.Actor{outlet, outlet2}[i%2])
				}()
			}
			close(start)
			wg.Wait()
			wins := 0
			for _, err := range errs {
				switch {
				case err == nil:
					wins++
				case errors.Is(err, card.ErrConflict):
				default:
					t.Fatalf("round %d: unexpected error %v", round, err)
				}
			}
			if wins != 1 {
				t.Fatalf("round %d: %d winners, want exactly 1 (%v)", round, wins, errs)
			}
			after, _ := e.svc.Card(ctx, "A00000001")
			if after.Card.Version != view.Card.Version+1 {
				t.Fatalf("version %d → %d", view.Card.Version, after.Card.Version)
			}
		}
		rep, err := e.reg.VerifyAudit(ctx)
		if err != nil || !rep.OK || rep.Entries != 4 {
			t.Fatalf("audit after races: %+v %v", rep, err)
		}
	})
}

func TestDevicesAndDelegation(t *testing.T) {
	backends(t, func(t *testing.T, mk func(*testing.T) *env) {
		ctx := context.Background()
		e := mk(t)
		ga := e.ready(t, aliceSSN, "张秀英", "A00000001", "730591") // elderly principal
		gb := e.ready(t, bobSSN, "李明", "B00000001", "730591")    // the relative
		e.issue(t, kidSSN, "李小明", "K00000001")
		alice, bob := ga.Holder.ID, gb.Holder.ID

		var second storage.Device
		t.Run("ok/bind-second-device", func(t *testing.T) {
			var err error
			if second, err = e.svc.BindDevice(ctx, card.Actor{ID: alice}, ga.ECard.ID, device("phone-2")); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("fail/device-cap", func(t *testing.T) {
			if _, err := e.svc.BindDevice(ctx, card.Actor{ID: alice}, ga.ECard.ID, device("phone-3")); !errors.Is(err, card.ErrDeviceLimit) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("fail/duplicate-device-key", func(t *testing.T) {
			if _, err := e.svc.BindDevice(ctx, card.Actor{ID: bob}, gb.ECard.ID, device("phone-2")); !errors.Is(err, card.ErrExists) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("ok/unbind-frees-slot", func(t *testing.T) {
			if err := e.svc.UnbindDevice(ctx, card.Actor{ID: alice}, ga.Device.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := e.svc.BindDevice(ctx, card.Actor{ID: alice}, ga.ECard.ID, device("phone-3")); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("fail/agent-without-delegation", func(t *testing.T) {
			_, err := e.svc.BindDevice(ctx, card.Actor{ID: bob, OnBehalfOf: alice}, ga.ECard.ID, device("x1"))
			if !errors.Is(err, card.ErrNotDelegated) {
				t.Fatalf("err = %v", err)
			}
		})
		d, err := e.svc.Delegate(ctx, outlet, aliceSSN, bobSSN, card.DelegationRequest{Kind: storage.DelegationAgent, Evidence: "委托书-2026-001"})
		if err != nil {
			t.Fatal(err)
		}
		t.Run("ok/agent-acts-audited-with-act", func(t *testing.T) {
			if err := e.svc.UnbindDevice(ctx, card.Actor{ID: bob, OnBehalfOf: alice}, second.ID); err != nil {
				t.Fatal(err)
			}
			es, _ := e.reg.AuditEntries(ctx, 0, 1000)
			last := es[len(es)-1]
			if last.Actor != bob || last.Act != alice || last.Action != string(card.ActionUnbindDevice) {
				t.Fatalf("audit %+v", last)
			}
		})
		t.Run("fail/agent-cannot-activate-bank", func(t *testing.T) {
			if _, err := e.svc.ActivateBank(ctx, card.Actor{ID: bob, OnBehalfOf: alice}, ga.ECard.ID); !errors.Is(err, card.ErrNotDelegated) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("ok/holder-activates-bank", func(t *testing.T) {
			ec, err := e.svc.ActivateBank(ctx, card.Actor{ID: alice}, ga.ECard.ID)
			if err != nil || ec.Level != 2 {
				t.Fatalf("%+v %v", ec, err)
			}
		})
		t.Run("fail/guardian-for-adult", func(t *testing.T) {
			_, err := e.svc.Delegate(ctx, outlet, aliceSSN, bobSSN, card.DelegationRequest{Kind: storage.DelegationGuardian})
			if !errors.Is(err, card.ErrDelegationRule) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("ok/guardian-for-minor-until-18", func(t *testing.T) {
			g, err := e.svc.Delegate(ctx, outlet, kidSSN, bobSSN, card.DelegationRequest{Kind: storage.DelegationGuardian})
			if err != nil || !g.ValidUntil.Equal(time.Date(2033, 7, 7, 0, 0, 0, 0, time.UTC)) {
				t.Fatalf("%+v %v", g, err)
			}
		})
		t.Run("fail/holder-loss-report-other-card", func(t *testing.T) {
			if _, err := e.svc.ReportLossByHolder(ctx, card.Actor{ID: bob}, bob, "A00000001"); !errors.Is(err, card.ErrNotFound) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("ok/agent-reports-loss-for-principal", func(t *testing.T) {
			c, err := e.svc.ReportLossByHolder(ctx, card.Actor{ID: bob, OnBehalfOf: alice}, alice, "A00000001")
			if err != nil || c.Status != storage.CardLost {
				t.Fatalf("%v %v", c.Status, err)
			}
		})
		t.Run("fail/holder-loss-report-twice", func(t *testing.T) {
			if _, err := e.svc.ReportLossByHolder(ctx, card.Actor{ID: alice}, alice, "A00000001"); !errors.Is(err, card.ErrForbiddenTransition) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("ok/revoke-delegation", func(t *testing.T) {
			if err := e.svc.RevokeDelegation(ctx, outlet, d.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := e.svc.Authorize(ctx, bob, alice, card.ActionUseECard); !errors.Is(err, card.ErrNotDelegated) {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("ok/audit-intact", func(t *testing.T) {
			rep, err := e.reg.VerifyAudit(ctx)
			if err != nil || !rep.OK {
				t.Fatalf("%+v %v", rep, err)
			}
		})
	})
}

func TestUnavailable(t *testing.T) {
	backends(t, func(t *testing.T, mk func(*testing.T) *env) {
		e := mk(t)
		e.reg.Close()
		ctx := context.Background()
		_, err := e.svc.ReportLoss(ctx, outlet, card.CardRef{Number: "A00000001"})
		if !errors.Is(err, card.ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
		if _, err := e.svc.VerifyPIN(ctx, "A00000001", "730591"); !errors.Is(err, card.ErrUnavailable) {
			t.Fatalf("VerifyPIN on a closed store = %v (an outage must not look like a wrong PIN)", err)
		}
	})
}

// BenchmarkVerifyPIN is one holder PIN check end to end on SQLite: lookup,
// durable ChargePINAttempt, HMAC-SM3 compare, ResetPINFailures, holder read.
func BenchmarkVerifyPIN(b *testing.B) {
	secrets, err := essql.LoadOrCreateSecrets(filepath.Join(b.TempDir(), "keys"))
	if err != nil {
		b.Fatal(err)
	}
	reg, err := essql.Open(context.Background(), essql.Config{URL: "sqlite://" + filepath.Join(b.TempDir(), "r.db"), Secrets: secrets, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close()
	svc, _ := card.New(card.Config{Registry: reg, PINKey: secrets.PINKey, Logger: quiet(), Now: func() time.Time { return testNow }})
	ctx := context.Background()
	if _, err := svc.IssueCard(ctx, outlet, card.IssueRequest{SSN: aliceSSN, Name: "张秀英", Number: "A00000001", Region: "411302"}); err != nil {
		b.Fatal(err)
	}
	if err := svc.ChangePIN(ctx, card.Actor{}, "A00000001", card.InitialPIN, "730591"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := svc.VerifyPIN(ctx, "A00000001", "730591"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCheckPIN: the wallet's check on a card read a moment earlier. A
// correct PIN is one statement; everything else is charged as VerifyPIN
// charges, judged against the card as it is now, not as it was read.
func TestCheckPIN(t *testing.T) {
	backends(t, func(t *testing.T, mk func(*testing.T) *env) {
		ctx := context.Background()
		e := mk(t)
		e.ready(t, aliceSSN, "张秀英", "A00000001", "730591")
		read := func() storage.Card { return e.card(t, "A00000001") }
		failures := func() int { return read().PIN.Failures }
		snap := read()
		if err := e.svc.CheckPIN(ctx, snap, "730591"); err != nil {
			t.Fatalf("right PIN: %v", err)
		}
		if err := e.svc.CheckPIN(ctx, snap, "000001"); err != card.ErrAuthFailed || failures() != 1 {
			t.Fatalf("wrong PIN: %v, %d failures (want ErrAuthFailed, 1)", err, failures())
		}
		// The snapshot says 0 failures; the registry says 1: the right PIN resets it.
		if err := e.svc.CheckPIN(ctx, snap, "730591"); err != nil || failures() != 0 {
			t.Fatalf("right PIN on a stale read: %v, %d failures", err, failures())
		}
		t.Run("fail/changed-since-read", func(t *testing.T) {
			old := read()
			if err := e.svc.ChangePIN(ctx, card.Actor{}, "A00000001", "730591", "730592"); err != nil {
				t.Fatal(err)
			}
			if err := e.svc.CheckPIN(ctx, old, "730591"); err != card.ErrAuthFailed || failures() != 1 {
				t.Fatalf("the replaced PIN against a read from before the change: %v, %d failures", err, failures())
			}
			if err := e.svc.CheckPIN(ctx, old, "730592"); err != card.ErrAuthFailed {
				t.Fatalf("the new PIN judged against the old read must be charged, not accepted: %v", err)
			}
			if err := e.svc.CheckPIN(ctx, read(), "730592"); err != nil || failures() != 0 {
				t.Fatalf("the new PIN: %v, %d failures", err, failures())
			}
		})
		t.Run("fail/locked-since-read", func(t *testing.T) {
			old := read()
			var wg sync.WaitGroup
			for range 12 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := e.svc.CheckPIN(ctx, old, "000001"); err != card.ErrAuthFailed {
						t.Errorf("wrong PIN: %v", err)
					}
				}()
			}
			wg.Wait()
			if c := read(); !c.PIN.Locked || c.PIN.Failures != 5 {
				t.Fatalf("12 concurrent wrong PINs: %+v, want locked after exactly 5 charges", c.PIN)
			}
			if err := e.svc.CheckPIN(ctx, old, "730592"); err != card.ErrAuthFailed {
				t.Fatalf("right PIN on a card locked since the read: %v", err)
			}
			if c := read(); !c.PIN.Locked {
				t.Fatal("a right PIN unlocked a locked card")
			}
		})
		t.Run("fail/must-change", func(t *testing.T) {
			e.issue(t, bobSSN, "李明", "A00000002")
			if err := e.svc.CheckPIN(ctx, e.card(t, "A00000002"), card.InitialPIN); !errors.Is(err, card.ErrMustChangePIN) {
				t.Fatalf("initial PIN: %v", err)
			}
		})
	})
}

// TestApplyIdentityMismatchCounts: an e-card application with the right PIN
// but the wrong SSN or name counts as a failed attempt, so a known PIN
// cannot be used to try identities without limit: the fifth such attempt
// locks the PIN, and then even a fully correct application fails.
func TestApplyIdentityMismatchCounts(t *testing.T) {
	backends(t, func(t *testing.T, mk func(*testing.T) *env) {
		ctx := context.Background()
		e := mk(t)
		e.issue(t, aliceSSN, "张秀英", "A00000001")
		if err := e.svc.ChangePIN(ctx, card.Actor{}, "A00000001", card.InitialPIN, "730591"); err != nil {
			t.Fatal(err)
		}
		apply := func(ssn, name string) error {
			_, err := e.svc.ApplyECard(ctx, card.Actor{}, card.ApplyRequest{CardNumber: "A00000001", SSN: ssn, Name: name, PIN: "730591", Device: device("d-apply")})
			return err
		}
		pinState := func() storage.PINState { return e.card(t, "A00000001").PIN }
		if err := apply(bobSSN, "张秀英"); err != card.ErrAuthFailed || pinState().Failures != 1 {
			t.Fatalf("wrong SSN: %v, %+v (want ErrAuthFailed and one failure)", err, pinState())
		}
		for i := 0; i < 4; i++ {
			if err := apply(aliceSSN, "王五"); err != card.ErrAuthFailed {
				t.Fatalf("wrong name %d: %v", i, err)
			}
		}
		if st := pinState(); !st.Locked || st.Failures != 5 {
			t.Fatalf("after five identity mismatches: %+v, want locked", st)
		}
		if err := apply(aliceSSN, "张秀英"); err != card.ErrAuthFailed {
			t.Fatalf("a correct application on the locked PIN: %v", err)
		}
		evs := eventTypes(t, e.reg, 0)
		if !slices.Contains(evs, string(card.EventPINLocked)) {
			t.Fatalf("no %s event among %v", card.EventPINLocked, evs)
		}
	})
}
