package wallet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
	"github.com/essc-project/essc/storage/memory"
	"github.com/essc-project/essc/storage/registrytest"
	essql "github.com/essc-project/essc/storage/sql"
)

// timingEnv is the wallet over the real card service and a real (SQLite)
// registry: the PIN paths do exactly the database work production does.
type timingEnv struct {
	mux  *http.ServeMux
	base string
	reg  *essql.Store
	svc  *card.Service
	now  time.Time
}

// noQR is never reached in the timing test: every PIN check fails first.
type noQR struct{}

func (noQR) Scan(context.Context, qrlogin.Device, string) (qrlogin.ScanView, error) {
	return qrlogin.ScanView{}, qrlogin.ErrNotFound
}
func (noQR) ResolveCode(context.Context, qrlogin.Device, string) (string, error) {
	return "", qrlogin.ErrBadCode
}
func (noQR) Confirm(context.Context, qrlogin.Device, string, int, qrlogin.Approval) error {
	return qrlogin.ErrNotFound
}
func (noQR) Deny(context.Context, qrlogin.Device, string) error { return qrlogin.ErrNotFound }

func newTimingEnv(t *testing.T, url string) *timingEnv {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := time.Now()
	secrets, err := essql.LoadOrCreateSecrets(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := essql.Open(context.Background(), essql.Config{URL: url, Secrets: secrets, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	svc, err := card.New(card.Config{Registry: reg, PINKey: secrets.PINKey, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	store, err := memory.New(memory.Config{
		Lookup:     func(context.Context, string) (fosite.Client, error) { return nil, storage.ErrNotFound },
		NewSession: func() fosite.Session { return &openid.DefaultSession{} }})
	if err != nil {
		t.Fatal(err)
	}
	issuerKey, _ := signing.GenerateKey(signing.AlgSM2SM3)
	const base = "https://essc.test"
	h, err := wallet.New(wallet.Config{BaseURL: base, Issuer: base + "/gm", Cards: svc, QR: noQR{}, Registry: reg,
		Store: store, Keys: keys{issuerKey}, AnonymousPerIP: 1 << 30, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	return &timingEnv{mux: mux, base: base, reg: reg, svc: svc, now: now}
}

// timingCard is one holder's card with its PIN changed, an e-card and a bound device.
type timingCard struct {
	number, ssn, name, pin string
	id                     string
	dev                    *signing.Key
	rightPIN               bool // apply with the card's own PIN (and, in the class using it, the wrong SSN)
}

// issue makes card i: issued, initial PIN changed, e-card applied for with dev.
func (e *timingEnv) issue(t *testing.T, i int) timingCard {
	t.Helper()
	ctx := context.Background()
	first17 := fmt.Sprintf("110105%04d0612%03d", 1960+i, 100+i)
	c := timingCard{number: fmt.Sprintf("T%08d", i), ssn: first17 + string(card.SSNCheckChar(first17)),
		name: fmt.Sprintf("测试%d", i), pin: "730591"}
	iss, err := e.svc.IssueCard(ctx, card.Actor{ID: "outlet"}, card.IssueRequest{SSN: c.ssn, Name: c.name, Number: c.number, Region: "110105"})
	if err != nil {
		t.Fatal(err)
	}
	c.id = iss.Card.ID
	if err := e.svc.ChangePIN(ctx, card.Actor{ID: "wallet"}, c.number, card.InitialPIN, c.pin); err != nil {
		t.Fatal(err)
	}
	c.dev, _ = signing.GenerateKey(signing.AlgSM2SM3)
	jwk, _ := json.Marshal(c.dev.PublicJWK())
	if _, err := e.svc.ApplyECard(ctx, card.Actor{ID: "wallet"}, card.ApplyRequest{CardNumber: c.number, SSN: c.ssn, Name: c.name, PIN: c.pin,
		Device: card.DeviceKey{Thumbprint: c.dev.Thumbprint(), PublicKeyJWK: jwk, Channel: "ecard-app"}}); err != nil {
		t.Fatal(err)
	}
	return c
}

// request builds a signed wallet request (outside the timed section).
func (e *timingEnv) request(t *testing.T, dev *signing.Key, path string, body any, embed bool) *http.Request {
	t.Helper()
	b, _ := json.Marshal(body)
	proof, err := wallet.SignProof(dev, http.MethodPost, e.base+path, b, time.Now(), embed)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, e.base+path, strings.NewReader(string(b)))
	r.Header.Set(wallet.ProofHeader, proof)
	r.Header.Set("Content-Type", "application/json")
	return r
}

// TestPINTimingUniform measures what an unauthenticated caller (or a stolen
// phone) learns from the latency of a refused PIN: unknown card, wrong PIN,
// locked PIN and a lost card (its e-card suspended) must cost the same work
// — same answer, and medians of interleaved samples within a factor and an
// absolute bound — on apply, PIN change and QR confirm (device binding
// shares VerifyPIN with confirm).
//
// It runs on SQLite, and on PostgreSQL when ESSC_TEST_DATABASE_URL is set
// (there every skipped round trip is a loopback network hop).
func TestPINTimingUniform(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		pinTiming(t, newTimingEnv(t, "sqlite://"+filepath.Join(t.TempDir(), "registry.db")))
	})
	t.Run("postgres", func(t *testing.T) {
		url := os.Getenv("ESSC_TEST_DATABASE_URL")
		if url == "" {
			t.Skip("ESSC_TEST_DATABASE_URL not set")
		}
		pinTiming(t, newTimingEnv(t, registrytest.PostgresSchema(t, url)))
	})
}

func pinTiming(t *testing.T, e *timingEnv) {
	ctx := context.Background()
	wrong, locked, lost := e.issue(t, 1), e.issue(t, 2), e.issue(t, 3)
	for range card.DefaultLockAfter {
		if _, err := e.svc.VerifyPIN(ctx, locked.number, "000001"); err == nil {
			t.Fatal("wrong PIN accepted")
		}
	}
	if _, err := e.svc.VerifyPIN(ctx, locked.number, locked.pin); err == nil {
		t.Fatal("setup: the locked card still accepts its PIN")
	}
	if _, err := e.svc.ReportLoss(ctx, card.Actor{ID: "outlet"}, card.CardRef{Number: lost.number}); err != nil {
		t.Fatal(err)
	}
	unknown := timingCard{number: "T99999999", ssn: wrong.ssn, name: wrong.name}
	anon, _ := signing.GenerateKey(signing.AlgSM2SM3)

	type class struct {
		name string
		c    timingCard
	}
	anonClasses := []class{{"unknown-card", unknown}, {"wrong-pin", wrong}, {"locked-pin", locked}, {"ecard-suspended", lost}}
	type endpoint struct {
		path    string
		embed   bool
		classes []class
		body    func(c timingCard) any
		dev     func(c timingCard) *signing.Key
	}
	const badPIN = "468024"
	// Apply also refuses the right PIN with someone else's SSN, as a wrong PIN.
	wrongIdentity := timingCard{number: wrong.number, ssn: locked.ssn, name: wrong.name, pin: wrong.pin, rightPIN: true}
	endpoints := []endpoint{
		{path: "/wallet/v1/ecards", embed: true, classes: append(slices.Clone(anonClasses), class{"wrong-identity", wrongIdentity}),
			dev: func(timingCard) *signing.Key { return anon },
			body: func(c timingCard) any {
				pin := badPIN
				if c.rightPIN {
					pin = c.pin
				}
				return wallet.ApplyRequest{CardNumber: c.number, SSN: c.ssn, Name: c.name, PIN: pin}
			}},
		{path: "/wallet/v1/pin", embed: true, classes: anonClasses, dev: func(timingCard) *signing.Key { return anon },
			body: func(c timingCard) any {
				return wallet.PINChangeRequest{CardNumber: c.number, OldPIN: badPIN, NewPIN: "730592"}
			}},
		// Confirm is device-authenticated: the phone's own card, wrong or
		// locked PIN (a suspended e-card is refused before any PIN check).
		{path: "/wallet/v1/qr/confirm", classes: []class{{"wrong-pin", wrong}, {"locked-pin", locked}},
			dev: func(c timingCard) *signing.Key { return c.dev },
			body: func(timingCard) any {
				return wallet.ConfirmRequest{Txn: "AAAAAAAAAAAAAAAAAAAAAA", Number: 42, PIN: badPIN}
			}},
	}

	samples := 80
	if testing.Short() {
		samples = 40
	}
	const warmup, attempts = 5, 3
	for _, ep := range endpoints {
		t.Run(strings.TrimPrefix(ep.path, "/wallet/v1/"), func(t *testing.T) {
			measure := func() [][]time.Duration {
				durs := make([][]time.Duration, len(ep.classes))
				order := make([]int, len(ep.classes))
				for i := range order {
					order[i] = i
				}
				for s := range samples + warmup {
					rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
					for _, ci := range order {
						cl := ep.classes[ci]
						req := e.request(t, ep.dev(cl.c), ep.path, ep.body(cl.c), ep.embed)
						rec := httptest.NewRecorder()
						start := time.Now()
						e.mux.ServeHTTP(rec, req)
						d := time.Since(start)
						var out struct{ Error string }
						json.Unmarshal(rec.Body.Bytes(), &out)
						if rec.Code != http.StatusUnauthorized || out.Error != "auth_failed" {
							t.Fatalf("%s: %d %s, want 401 auth_failed for every refused PIN", cl.name, rec.Code, rec.Body)
						}
						if s >= warmup {
							durs[ci] = append(durs[ci], d)
						}
					}
					// Keep the counters of the wrong-PIN cards below the lock
					// (untimed): every sample is a first failure.
					for _, c := range []timingCard{wrong, lost} {
						if err := e.reg.ResetPINFailures(ctx, c.id); err != nil {
							t.Fatal(err)
						}
					}
				}
				return durs
			}
			// A real difference shows in every round; a burst of load on
			// a shared machine rarely lasts three.
			var problem string
			for range attempts {
				if problem = compareMedians(t, func(i int) string { return ep.classes[i].name }, measure()); problem == "" {
					return
				}
			}
			t.Errorf("refusal latency differs by class in %d rounds of %d samples; last: %s", attempts, samples, problem)
		})
	}
	// The locked card is still locked and the others still work.
	if _, err := e.svc.VerifyPIN(ctx, locked.number, locked.pin); err == nil {
		t.Error("the locked card was unlocked by the probes")
	}
	if _, err := e.svc.VerifyPIN(ctx, wrong.number, wrong.pin); err != nil {
		t.Errorf("the wrong-PIN card was locked by the probes: %v", err)
	}
}

// Bounds on the medians of the refusal classes. A real difference (a
// skipped database write or audit transaction) shows as a factor of about 2
// (≈100 µs on SQLite, more on PostgreSQL); the bounds leave room for a noisy
// shared CI machine under -race. A ratio over a difference below
// minMedianDiff is noise, not a usable signal.
const (
	maxMedianRatio = 1.5
	minMedianDiff  = 40 * time.Microsecond
	maxMedianDiff  = 1500 * time.Microsecond
)

// compareMedians returns "" when the medians of durs are within the
// bounds, else what is wrong.
func compareMedians(t *testing.T, name func(int) string, durs [][]time.Duration) string {
	t.Helper()
	med := make([]time.Duration, len(durs))
	var parts []string
	for i, d := range durs {
		s := slices.Clone(d)
		slices.Sort(s)
		med[i] = s[len(s)/2]
		parts = append(parts, fmt.Sprintf("%s=%v", name(i), med[i]))
	}
	lo, hi := slices.Min(med), slices.Max(med)
	all := strings.Join(parts, " ")
	t.Logf("medians: %s", all)
	switch {
	case float64(hi) > maxMedianRatio*float64(lo) && hi-lo > minMedianDiff:
		return fmt.Sprintf("max/min %.2f > %.1f: %s", float64(hi)/float64(lo), maxMedianRatio, all)
	case hi-lo > maxMedianDiff:
		return fmt.Sprintf("max-min %v > %v: %s", hi-lo, maxMedianDiff, all)
	}
	return ""
}
