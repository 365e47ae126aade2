package qrlogin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/storage"
	"github.com/essc-project/essc/storage/memory"
	redisstore "github.com/essc-project/essc/storage/redis"
	"github.com/essc-project/essc/storage/storagetest"
)

// holders is a small real HolderCheck: a set of inactive holders.
type holders struct {
	mu       sync.Mutex
	inactive map[string]bool
}

func (h *holders) set(holderID string, inactive bool) {
	h.mu.Lock()
	h.inactive[holderID] = inactive
	h.mu.Unlock()
}

func (h *holders) CheckHolder(_ context.Context, holderID, _ string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.inactive[holderID] {
		return qrlogin.ErrHolderInactive
	}
	return nil
}

// completer records completions and answers like the OIDC side (a redirect).
type completer struct {
	n    atomic.Int32
	last atomic.Pointer[qrlogin.Approval]
}

func (c *completer) Complete(w http.ResponseWriter, r *http.Request, req qrlogin.Request, a qrlogin.Approval) {
	c.n.Add(1)
	c.last.Store(&a)
	http.Redirect(w, r, "https://rp.example/cb?code=issued", http.StatusSeeOther)
}

type env struct {
	svc     *qrlogin.Service
	clock   *storagetest.Clock
	h       *holders
	c       *completer
	obs     *observer
	srv     *httptest.Server
	store   storage.Sessions
	replica func(testing.TB) storage.Sessions
}

// generous limits: the tests that are not about rate limiting never hit one.
var generous = qrlogin.Limits{TxnPerIP: 1000, PollsPerTxn: 1000, FramesPerTxn: 1000, ScansPerDevice: 1000, LookupsPerIP: 20, StreamsPerTxn: 1000}

var frameKey = []byte("0123456789abcdef0123456789abcdef")

// opener opens a fresh store for one test and returns it with a function
// that opens another replica's view of the same data (for Redis a second
// client and pub/sub connection; for memory the same store).
type opener func(t testing.TB, clock *storagetest.Clock) (storage.Sessions, func(testing.TB) storage.Sessions)

// backends yields the stores the tests run on: memory always, Redis when
// ESSC_TEST_REDIS_URL is set (and then it must be reachable).
func backends(t testing.TB) map[string]opener {
	lookup := func(context.Context, string) (fosite.Client, error) { return &fosite.DefaultClient{ID: "c"}, nil }
	newSess := func() fosite.Session { return &openid.DefaultSession{} }
	out := map[string]opener{
		"memory": func(t testing.TB, clock *storagetest.Clock) (storage.Sessions, func(testing.TB) storage.Sessions) {
			s, err := memory.New(memory.Config{Now: clock.Now, Lookup: lookup, NewSession: newSess})
			if err != nil {
				t.Fatal(err)
			}
			return s, func(testing.TB) storage.Sessions { return s }
		},
	}
	if u := os.Getenv("ESSC_TEST_REDIS_URL"); u != "" {
		out["redis"] = func(t testing.TB, clock *storagetest.Clock) (storage.Sessions, func(testing.TB) storage.Sessions) {
			prefix := fmt.Sprintf("essc-test-qr-%d:", time.Now().UnixNano())
			replica := func(t testing.TB) storage.Sessions {
				opt, err := goredis.ParseURL(u)
				if err != nil {
					t.Fatal(err)
				}
				c := goredis.NewClient(opt)
				if err := c.Ping(context.Background()).Err(); err != nil {
					t.Fatalf("ESSC_TEST_REDIS_URL set but Redis unreachable: %v", err)
				}
				s, err := redisstore.New(redisstore.Config{Client: c, Prefix: prefix, Now: clock.Now, Lookup: lookup, NewSession: newSess})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					ctx := context.Background()
					iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
					for iter.Next(ctx) {
						c.Del(ctx, iter.Val())
					}
					s.Close()
					c.Close()
				})
				return s
			}
			return replica(t), replica
		}
	} else {
		t.Log("ESSC_TEST_REDIS_URL not set: QR tests run on memory only")
	}
	return out
}

func newEnv(t *testing.T, open opener) *env { return newEnvLimits(t, open, generous) }

func newEnvLimits(t *testing.T, open opener, limits qrlogin.Limits) *env {
	clock := storagetest.NewClock(time.Now())
	e := &env{clock: clock, h: &holders{inactive: map[string]bool{}}, c: &completer{}, obs: &observer{}}
	e.store, e.replica = open(t, clock)
	e.svc, e.srv = e.server(t, e.store, limits)
	return e
}

// server starts one replica: a Service on store with its HTTP handler and
// a stand-in /authorize that starts a login.
func (e *env) server(t *testing.T, store storage.Sessions, limits qrlogin.Limits) (*qrlogin.Service, *httptest.Server) {
	return e.serverLocal(t, store, limits, nil)
}

// serverLocal is server with the per-transaction limits counted in local.
func (e *env) serverLocal(t *testing.T, store storage.Sessions, limits qrlogin.Limits, local storage.RateLimiter) (*qrlogin.Service, *httptest.Server) {
	svc, err := qrlogin.New(qrlogin.Config{Store: store, Holders: e.h, Completer: e.c, Observer: e.obs, FrameKey: frameKey,
		Now: e.clock.Now, Limits: limits, Local: local})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h := svc.Handler()
	h.Mount(mux)
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		h.Start(w, r, req(r.URL.Query().Get("acr")))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return svc, srv
}

// observer records every transition (the audit hook).
type observer struct {
	mu  sync.Mutex
	log []string // "txn from>to reason"
}

func (o *observer) Transition(_ context.Context, txn, _, from, to string, attrs map[string]string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.log = append(o.log, txn+" "+from+">"+to+" "+attrs["reason"])
}

func (o *observer) of(txn string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, l := range o.log {
		if rest, ok := strings.CutPrefix(l, txn+" "); ok {
			out = append(out, strings.TrimSpace(rest))
		}
	}
	return out
}

func req(acr string) qrlogin.Request {
	r := qrlogin.Request{Profile: "gm", ClientID: "portal", ClientName: "省网上服务大厅", ClientDomain: "portal.example.gov.cn",
		Scopes: []string{"openid", "profile"}, Purpose: "login", RequestedAt: time.Now(), Pending: []byte("pending")}
	if acr != "" {
		r.ACRValues = []string{acr}
	}
	return r
}

// browser is a cookie-keeping HTTP client that does not follow redirects.
type browser struct {
	t   *testing.T
	c   *http.Client
	e   *env
	txn string
}

func (e *env) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) open(acr string) {
	resp, err := b.c.Get(b.e.srv.URL + "/authorize?acr=" + url.QueryEscape(acr))
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.t.Fatalf("login page: %d %s", resp.StatusCode, body)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options"} {
		if resp.Header.Get(h) == "" {
			b.t.Errorf("login page lacks %s", h)
		}
	}
	i := strings.Index(string(body), `data-base="/qr/v1/transactions/`)
	if i < 0 {
		b.t.Fatalf("no transaction in page: %s", body)
	}
	rest := string(body)[i+len(`data-base="/qr/v1/transactions/`):]
	b.txn = rest[:strings.IndexByte(rest, '"')]
}

func (b *browser) getJSON(path string, out any) int {
	resp, err := b.c.Get(b.e.srv.URL + qrlogin.Base + b.txn + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(out)
	return resp.StatusCode
}

func (b *browser) payload() string {
	var f struct{ Payload string }
	if code := b.getJSON("/frame", &f); code != 200 {
		b.t.Fatalf("frame: %d", code)
	}
	return f.Payload
}

func (b *browser) state() (string, int) {
	var s struct {
		State  string
		Number int
	}
	b.getJSON("", &s)
	return s.State, s.Number
}

// denial returns the state and the denial reason the browser sees.
func (b *browser) denial() (string, string) {
	var s struct{ State, Reason string }
	b.getJSON("", &s)
	return s.State, s.Reason
}

// page fetches the login page again (without following anything).
func (b *browser) page() string {
	resp, err := b.c.Get(b.e.srv.URL + qrlogin.Base + b.txn + "/page")
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func (b *browser) complete() *http.Response {
	resp, err := b.c.Post(b.e.srv.URL+qrlogin.Base+b.txn+"/complete", "application/x-www-form-urlencoded", nil)
	if err != nil {
		b.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

var phone = qrlogin.Device{HolderID: "h1", ECardID: "e1", DeviceID: "d1"}

func pin() qrlogin.Approval {
	return qrlogin.Approval{ACR: qrlogin.ACRPIN, AMR: []string{"hwk", "pin"}}
}

func TestQRLogin(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) { runQRLogin(t, open) })
	}
}

func runQRLogin(t *testing.T, open opener) {
	ctx := context.Background()

	t.Run("ok/full-login", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		view, err := e.svc.Scan(ctx, phone, b.payload())
		if err != nil {
			t.Fatal(err)
		}
		if view.RPName != "省网上服务大厅" || view.RPDomain != "portal.example.gov.cn" || len(view.Candidates) != 3 || view.RequiredACR != qrlogin.ACRPIN {
			t.Fatalf("scan view %+v", view)
		}
		st, number := b.state()
		if st != "scanned" || number < 10 {
			t.Fatalf("browser sees %s %d", st, number)
		}
		found := false
		for _, c := range view.Candidates {
			found = found || c == number
		}
		if !found {
			t.Fatalf("browser number %d not among phone candidates %v", number, view.Candidates)
		}
		if resp := b.complete(); resp.StatusCode != 200 || e.c.n.Load() != 0 {
			t.Fatalf("completed before approval: %d", resp.StatusCode)
		}
		if err := e.svc.Confirm(ctx, phone, b.txn, number, pin()); err != nil {
			t.Fatal(err)
		}
		resp := b.complete()
		if resp.StatusCode != http.StatusSeeOther || e.c.n.Load() != 1 {
			t.Fatalf("complete: %d, completions %d", resp.StatusCode, e.c.n.Load())
		}
		if a := e.c.last.Load(); a.HolderID != "h1" || a.ACR != qrlogin.ACRPIN {
			t.Fatalf("approval %+v", a)
		}
		if resp := b.complete(); resp.StatusCode == http.StatusSeeOther || e.c.n.Load() != 1 {
			t.Fatal("fail/second complete accepted")
		}
	})

	t.Run("fail/screenshot-frame-older-than-window", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		old := b.payload()
		e.clock.Advance(qrlogin.FrameWindow + 2*time.Second)
		if _, err := e.svc.Scan(ctx, phone, old); !errors.Is(err, qrlogin.ErrFrameExpired) {
			t.Fatalf("stale frame: %v", err)
		}
		if _, err := e.svc.Scan(ctx, phone, b.payload()); err != nil {
			t.Fatalf("fresh frame refused: %v", err)
		}
	})

	t.Run("fail/forged-and-future-frames", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		f, _ := qrlogin.ParsePayload(b.payload())
		f.Elapsed += 30 // a frame from the future: MAC does not match
		if _, err := e.svc.Scan(ctx, phone, f.String()); !errors.Is(err, qrlogin.ErrFrameInvalid) {
			t.Fatalf("forged frame: %v", err)
		}
		if _, err := e.svc.Scan(ctx, phone, "essc://login?v=1&t=AAAAAAAAAAAAAAAAAAAAAA&e=0&c=AAAAAAAAAAAAAAAAAAAAAA"); !errors.Is(err, qrlogin.ErrNotFound) {
			t.Fatalf("unknown txn: %v", err)
		}
	})

	t.Run("fail/second-phone", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		p := b.payload()
		if _, err := e.svc.Scan(ctx, phone, p); err != nil {
			t.Fatal(err)
		}
		other := qrlogin.Device{HolderID: "h2", ECardID: "e2", DeviceID: "d2"}
		if _, err := e.svc.Scan(ctx, other, p); !errors.Is(err, qrlogin.ErrAlreadyScanned) {
			t.Fatalf("second phone: %v", err)
		}
		_, number := b.state()
		if err := e.svc.Confirm(ctx, other, b.txn, number, pin()); !errors.Is(err, qrlogin.ErrNotScanner) {
			t.Fatalf("confirm by the other phone: %v", err)
		}
	})

	t.Run("fail/relay-without-binding-cookie", func(t *testing.T) {
		e := newEnv(t, open)
		victim := e.browser(t)
		victim.open("")
		// The attacker learned the transaction id (from the QR) but has no cookie.
		attacker := e.browser(t)
		attacker.txn = victim.txn
		var s struct{ Error string }
		if code := attacker.getJSON("", &s); code != 404 || s.Error != "expired_token" {
			t.Fatalf("attacker status: %d %+v", code, s)
		}
		if code := attacker.getJSON("/frame", &s); code != 404 {
			t.Fatalf("attacker frame: %d", code)
		}
		if _, err := e.svc.Scan(ctx, phone, victim.payload()); err != nil {
			t.Fatal(err)
		}
		_, number := victim.state()
		if err := e.svc.Confirm(ctx, phone, victim.txn, number, pin()); err != nil {
			t.Fatal(err)
		}
		if resp := attacker.complete(); resp.StatusCode == http.StatusSeeOther || e.c.n.Load() != 0 {
			t.Fatalf("attacker collected the login: %d", resp.StatusCode)
		}
		if resp := victim.complete(); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("victim could not complete: %d", resp.StatusCode)
		}
	})

	t.Run("fail/wrong-number-denies", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		view, _ := e.svc.Scan(ctx, phone, b.payload())
		_, number := b.state()
		wrong := view.Candidates[0]
		if wrong == number {
			wrong = view.Candidates[1]
		}
		if err := e.svc.Confirm(ctx, phone, b.txn, wrong, pin()); !errors.Is(err, qrlogin.ErrWrongNumber) {
			t.Fatalf("wrong number: %v", err)
		}
		if st, _ := b.state(); st != "denied" {
			t.Fatalf("state after wrong number: %s", st)
		}
		if err := e.svc.Confirm(ctx, phone, b.txn, number, pin()); !errors.Is(err, qrlogin.ErrFinished) {
			t.Fatalf("confirm after denial: %v", err)
		}
	})

	t.Run("fail/replayed-confirm", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		e.svc.Scan(ctx, phone, b.payload())
		_, number := b.state()
		if err := e.svc.Confirm(ctx, phone, b.txn, number, pin()); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Confirm(ctx, phone, b.txn, number, pin()); !errors.Is(err, qrlogin.ErrFinished) {
			t.Fatalf("replayed confirm: %v", err)
		}
	})

	t.Run("fail/face-required-pin-refused", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open(qrlogin.ACRFace)
		view, _ := e.svc.Scan(ctx, phone, b.payload())
		if view.RequiredACR != qrlogin.ACRFace {
			t.Fatalf("required acr %s", view.RequiredACR)
		}
		_, number := b.state()
		if err := e.svc.Confirm(ctx, phone, b.txn, number, pin()); !errors.Is(err, qrlogin.ErrACRNotMet) {
			t.Fatalf("pin for face: %v", err)
		}
		face := qrlogin.Approval{ACR: qrlogin.ACRFace, AMR: []string{"hwk", "face"}}
		if err := e.svc.Confirm(ctx, phone, b.txn, number, face); err != nil {
			t.Fatalf("face: %v", err)
		}
	})

	t.Run("ok/check-made-by-the-caller-is-not-repeated", func(t *testing.T) {
		// WithHolderChecked for exactly this holder and e-card stands in for
		// the QR layer's own registry check; for another e-card it does not.
		e := newEnv(t, open)
		e.h.set("h1", true) // what the registry would say now
		b := e.browser(t)
		b.open("")
		other := qrlogin.WithHolderChecked(ctx, phone.HolderID, phone.ECardID+"-other")
		if _, err := e.svc.Scan(other, phone, b.payload()); !errors.Is(err, qrlogin.ErrHolderInactive) {
			t.Fatalf("a check of another e-card was taken for this one: %v", err)
		}
		b2 := e.browser(t)
		b2.open("")
		checked := qrlogin.WithHolderChecked(ctx, phone.HolderID, phone.ECardID)
		if _, err := e.svc.Scan(checked, phone, b2.payload()); err != nil {
			t.Fatalf("scan with the caller's passed check: %v", err)
		}
	})

	t.Run("fail/inactive-card-refused-live", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		e.h.set("h1", true)
		if _, err := e.svc.Scan(ctx, phone, b.payload()); !errors.Is(err, qrlogin.ErrHolderInactive) {
			t.Fatalf("inactive holder scanned: %v", err)
		}
		if st, reason := b.denial(); st != "denied" || reason != qrlogin.ReasonCardInvalid {
			t.Fatalf("browser after a lost card scanned: %s %s", st, reason)
		}
		if page := b.page(); !strings.Contains(page, "挂失") {
			t.Fatalf("page does not say the card is invalid: %s", page)
		}
		e.h.set("h1", false)
		b2 := e.browser(t)
		b2.open("")
		if _, err := e.svc.Scan(ctx, phone, b2.payload()); err != nil {
			t.Fatal(err)
		}
		_, number := b2.state()
		e.h.set("h1", true) // card reported lost between scan and confirm
		if err := e.svc.Confirm(ctx, phone, b2.txn, number, pin()); !errors.Is(err, qrlogin.ErrHolderInactive) {
			t.Fatalf("confirm after loss: %v", err)
		}
		if st, reason := b2.denial(); st != "denied" || reason != qrlogin.ReasonCardInvalid {
			t.Fatalf("browser after the card was lost: %s %s", st, reason)
		}
		if resp := b2.complete(); resp.StatusCode == http.StatusSeeOther || e.c.n.Load() != 0 {
			t.Fatal("completed with a lost card")
		}
	})

	t.Run("fail/expired-cannot-complete", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		e.svc.Scan(ctx, phone, b.payload())
		_, number := b.state()
		e.svc.Confirm(ctx, phone, b.txn, number, pin())
		e.clock.Advance(121 * time.Second)
		if resp := b.complete(); resp.StatusCode == http.StatusSeeOther || e.c.n.Load() != 0 {
			t.Fatalf("expired transaction completed: %d", resp.StatusCode)
		}
		if st, _ := b.state(); st != "expired" {
			t.Fatalf("state %s", st)
		}
	})

	t.Run("fail/txn-id-enumeration-rate-limited", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		codes := map[int]int{}
		for i := range 30 {
			b.txn = fmt.Sprintf("AAAAAAAAAAAAAAAAAAAA%02d", i)[:22]
			var s struct{}
			codes[b.getJSON("", &s)]++
		}
		if codes[http.StatusTooManyRequests] == 0 {
			t.Fatalf("30 guesses never throttled: %v", codes)
		}
	})

	t.Run("ok/elderly-mode-and-fallback-code", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		v, err := e.svc.SetElderly(ctx, b.txn, bindingOf(t, b))
		if err != nil || !v.Elderly || len(v.Code) != 8 {
			t.Fatalf("elderly: %+v %v", v, err)
		}
		old := b.payload()
		e.clock.Advance(12 * time.Second) // inside the 15 s elderly window
		if _, err := e.svc.Scan(ctx, phone, old); err != nil {
			t.Fatalf("elderly frame 12 s old refused: %v", err)
		}
		// A second transaction via the typed code.
		b2 := e.browser(t)
		b2.open("")
		v2, _ := e.svc.SetElderly(ctx, b2.txn, bindingOf(t, b2))
		p, err := e.svc.ResolveCode(ctx, qrlogin.Device{HolderID: "h3", ECardID: "e3", DeviceID: "d3"}, v2.Code)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Scan(ctx, qrlogin.Device{HolderID: "h3", ECardID: "e3", DeviceID: "d3"}, p); err != nil {
			t.Fatalf("scan via code: %v", err)
		}
		if _, err := e.svc.ResolveCode(ctx, phone, v2.Code); !errors.Is(err, qrlogin.ErrBadCode) {
			t.Fatalf("code reused: %v", err)
		}
	})

	t.Run("ok/sse-wakes-browser", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		p := b.payload()
		resp, err := b.c.Get(e.srv.URL + qrlogin.Base + b.txn + "/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		go func() {
			time.Sleep(50 * time.Millisecond)
			e.svc.Scan(ctx, phone, p)
		}()
		buf := make([]byte, 4096)
		var got strings.Builder
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(got.String(), `"state":"scanned"`) {
			if time.Now().After(deadline) {
				t.Fatalf("no scanned event: %s", got.String())
			}
			n, err := resp.Body.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				t.Fatalf("stream ended: %v %s", err, got.String())
			}
		}
	})

	t.Run("ok/16-concurrent-scans-one-wins", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		p := b.payload()
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				d := qrlogin.Device{HolderID: fmt.Sprint("h", i), ECardID: "e", DeviceID: fmt.Sprint("d", i)}
				if _, err := e.svc.Scan(ctx, d, p); err == nil {
					wins.Add(1)
				} else if !errors.Is(err, qrlogin.ErrAlreadyScanned) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d scans won", wins.Load())
		}
	})
}

// bindingOf reads the browser's binding cookie for its transaction.
func bindingOf(t *testing.T, b *browser) string {
	u, _ := url.Parse(b.e.srv.URL + qrlogin.Base + b.txn)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "essc-qr" {
			return c.Value
		}
	}
	t.Fatal("no binding cookie")
	return ""
}
