package entitlement_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
	"github.com/essc-project/essc/storage/registrytest"
	essql "github.com/essc-project/essc/storage/sql"
)

// clock is the injected, movable test clock.
type clock struct {
	mu      sync.Mutex
	t       time.Time
	running time.Time // non-zero: Now advances with real time from here
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running.IsZero() {
		return c.t.Add(time.Since(c.running))
	}
	return c.t
}

func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t, c.running = t, time.Time{}; c.mu.Unlock() }

// Run lets the clock advance with real time (dispatcher backoff and leases).
func (c *clock) Run() { c.mu.Lock(); c.running = time.Now(); c.mu.Unlock() }

type env struct {
	store     *essql.Store
	svc       *entitlement.Service
	clock     *clock
	keys      *signing.KeySet
	liveKey   *signing.Key // the development liveness test key
	pairwise  []byte
	ssnSerial atomic.Int64
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// engines runs fn on SQLite always and on PostgreSQL when
// ESSC_TEST_DATABASE_URL is set.
func engines(t *testing.T, fn func(t *testing.T, open func(t *testing.T) *env)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, func(t *testing.T) *env {
			return newEnv(t, "sqlite://"+filepath.Join(t.TempDir(), "r.db"))
		})
	})
	t.Run("postgres", func(t *testing.T) {
		url := os.Getenv("ESSC_TEST_DATABASE_URL")
		if url == "" {
			t.Skip("ESSC_TEST_DATABASE_URL not set: PostgreSQL entitlement tests skipped")
		}
		fn(t, func(t *testing.T) *env { return newEnv(t, registrytest.PostgresSchema(t, url)) })
	})
}

func newEnv(t testing.TB, url string) *env {
	t.Helper()
	ctx := context.Background()
	secrets, err := essql.LoadOrCreateSecrets(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2024, 3, 15, 10, 0, 0, 0, entitlement.CST())}
	st, err := essql.Open(ctx, essql.Config{URL: url, Secrets: secrets, Logger: quiet, Now: clk.Now})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	ks, err := signing.NewKeySet(signing.KeySetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.EnsureActive(time.Now(), signing.AlgSM2SM3, signing.AlgES256); err != nil {
		t.Fatal(err)
	}
	live, err := signing.GenerateKey(signing.AlgSM2SM3)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{store: st, clock: clk, keys: ks, liveKey: live, pairwise: []byte("0123456789abcdef0123456789abcdef")}
	e.svc, err = entitlement.New(entitlement.Config{Store: st, Registry: st, Keys: ks,
		Liveness: wallet.DevLiveness{Key: live, Now: clk.Now}, PairwiseKey: e.pairwise,
		Issuer: "https://idp.example.gov.cn", Now: clk.Now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []storage.Client{
		{ID: "agency-gm", Name: "省社保中心", Profile: storage.ProfileGM, Sector: "sector-gm", Scopes: []string{entitlement.ScopeManage}},
		{ID: "agency-intl", Name: "市社保局", Profile: storage.ProfileIntl, Sector: "sector-intl", Scopes: []string{entitlement.ScopeManage}},
	} {
		e.client(t, c)
	}
	return e
}

func (e *env) client(t testing.TB, c storage.Client) {
	t.Helper()
	c.AuthMethod = storage.AuthPrivateKeyJWT
	c.GrantTypes = []string{"client_credentials"}
	if err := e.store.Tx(context.Background(), func(tx storage.RegistryTx) error {
		if _, err := tx.Client(context.Background(), c.ID); err == nil {
			old, _ := tx.Client(context.Background(), c.ID)
			c.Version = old.Version
			_, err := tx.UpdateClient(context.Background(), c)
			return err
		}
		_, err := tx.CreateClient(context.Background(), c)
		return err
	}); err != nil {
		t.Fatalf("client: %v", err)
	}
}

// ssn returns a fresh valid SSN (born 1950).
func (e *env) ssn() string {
	n := e.ssnSerial.Add(1)
	first := fmt.Sprintf("11010119500101%03d", n%1000)
	if n >= 1000 {
		first = fmt.Sprintf("1101011950%02d%02d%03d", 1+(n/1000)%12, 1+(n/12000)%28, n%1000)
	}
	return first + string(card.SSNCheckChar(first))
}

// person is a holder with an active card and e-card.
type person struct {
	SSN, HolderID, CardID, ECardID string
}

func (e *env) person(t testing.TB) person {
	t.Helper()
	ctx := context.Background()
	p := person{SSN: e.ssn()}
	err := e.store.Tx(ctx, func(tx storage.RegistryTx) error {
		h, err := tx.CreateHolder(ctx, storage.Holder{Name: "张三", SSN: p.SSN})
		if err != nil {
			return err
		}
		c, err := tx.CreateCard(ctx, storage.Card{HolderID: h.ID, Number: fmt.Sprintf("C%08d", e.ssnSerial.Add(1)),
			Region: "110101", IssuedOn: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), Status: storage.CardActive})
		if err != nil {
			return err
		}
		ec, err := tx.CreateECard(ctx, storage.ECard{CardID: c.ID, HolderID: h.ID, Level: 1, Status: storage.ECardActive})
		if err != nil {
			return err
		}
		p.HolderID, p.CardID, p.ECardID = h.ID, c.ID, ec.ID
		return nil
	})
	if err != nil {
		t.Fatalf("person: %v", err)
	}
	return p
}

// cancel cancels the person's card as the card service does (card update +
// card.cancelled outbox event in one transaction).
func (e *env) cancel(t testing.TB, p person, reason storage.CancelReason) {
	t.Helper()
	ctx := context.Background()
	err := e.store.Tx(ctx, func(tx storage.RegistryTx) error {
		c, err := tx.Card(ctx, p.CardID)
		if err != nil {
			return err
		}
		c.Status, c.CancelReason = storage.CardCancelled, reason
		if _, err := tx.UpdateCard(ctx, c); err != nil {
			return err
		}
		ec, err := tx.ECard(ctx, p.ECardID)
		if err != nil {
			return err
		}
		ec.Status, ec.RevokedAt = storage.ECardRevoked, e.clock.Now()
		if _, err := tx.UpdateECard(ctx, ec); err != nil {
			return err
		}
		_, err = tx.AppendEvent(ctx, storage.Event{Type: card.EventCardCancelled, Aggregate: c.ID,
			Payload: []byte(fmt.Sprintf(`{"holder_id":%q,"card_id":%q,"reason":%q}`, p.HolderID, c.ID, reason))})
		return err
	})
	if err != nil {
		t.Fatalf("cancel: %v", err)
	}
}

// certifyInput is a valid app certification of p with fresh dev evidence.
func (e *env) certifyInput(t testing.TB, p person) entitlement.CertifyInput {
	t.Helper()
	ev, err := wallet.SignDevLiveness(e.liveKey, p.ECardID, "chal-1", e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return entitlement.CertifyInput{HolderID: p.HolderID, ECardID: p.ECardID, Method: entitlement.MethodApp,
		ACR: entitlement.ACRFace, AMR: []string{"hwk", "face"}, Challenge: "chal-1", LivenessEvidence: ev}
}

func (e *env) register(t testing.TB, agency string, p person, anchor time.Time) entitlement.View {
	t.Helper()
	v, err := e.svc.Register(context.Background(), agency, entitlement.RegisterInput{SSN: p.SSN, Benefit: entitlement.BenefitEnterprisePension, Anchor: anchor})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	return v
}

func (e *env) events(t testing.TB, agency string) []storage.EntitlementEvent {
	t.Helper()
	evs, err := e.svc.Events(context.Background(), agency, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func types(evs []storage.EntitlementEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}
