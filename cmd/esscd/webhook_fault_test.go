package main

// Webhook fault tests (issue 10) on the esscd binary with the embedded
// SQLite registry: an agency endpoint that fails, redirects or stays down
// (retries, dead letter, redelivery on demand), and esscd killed with
// SIGKILL while deliveries are in flight (nothing lost, same idempotency
// keys after the restart). The agency endpoint is an httptest TLS server
// (webhook URLs must be https); esscd trusts its certificate through
// SSL_CERT_FILE.

import (
	"bytes"
	"crypto/x509"
	dbsql "database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/essc-project/essc/idp/admin"
	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/signing"
)

// hookAttempt is one webhook request as the agency's endpoint saw it.
type hookAttempt struct {
	agency string
	key    string // Idempotency-Key
	body   []byte
	ev     entitlement.FeedEvent
	status int // what the endpoint answered (0 while held)
	at     time.Time
	// wasHeld: the request was blocked until release (the answer went to
	// a sender that may be gone).
	wasHeld bool
	// held requests only: when the sender went away (the request's context
	// ended) while it was held; zero if it was still open at release.
	goneAt time.Time
}

// hookTarget is the agencies' webhook endpoint (one TLS server, a path per
// agency). Every request must carry a valid detached JWS over the exact body
// under esscd's published keys and an Idempotency-Key equal to the event id;
// answer decides the status of each attempt.
type hookTarget struct {
	t        *testing.T
	srv      *httptest.Server
	certFile string

	mu       sync.Mutex
	keys     signing.Keys
	attempts []*hookAttempt
	// answer returns the status for an attempt (n: its number for this key,
	// from 1), a redirect Location for 3xx, or hold to block the request
	// until release is closed.
	answer      func(a *hookAttempt, n int) (status int, location string, hold bool)
	held        chan hookAttempt
	release     chan struct{}
	releaseHeld func()
}

func newHookTarget(t *testing.T) *hookTarget {
	h := &hookTarget{t: t, held: make(chan hookAttempt, 16), release: make(chan struct{})}
	h.srv = httptest.NewTLSServer(h)
	var once sync.Once
	// Cleanups run last-in first-out: release held handlers, then close.
	t.Cleanup(h.srv.Close)
	t.Cleanup(func() { once.Do(func() { close(h.release) }) })
	h.releaseHeld = func() { once.Do(func() { close(h.release) }) }
	h.certFile = filepath.Join(t.TempDir(), "agency-ca.pem")
	der := h.srv.Certificate().Raw
	if _, err := x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return h
}

// url is the webhook URL of agency.
func (h *hookTarget) url(agency string) string { return h.srv.URL + "/hook/" + agency }

// trust loads esscd's published JWKS (both profiles) to verify signatures.
func (h *hookTarget) trust(t *testing.T, base string) {
	t.Helper()
	var all signing.Keys
	for _, p := range []string{"/jwks.json", "/gm/jwks.json"} {
		code, body := do(t, http.DefaultClient, "GET", base+p, nil)
		ks, err := signing.ParseJWKS(body)
		if code != 200 || err != nil {
			t.Fatalf("%s: %d %v", p, code, err)
		}
		all = append(all, ks...)
	}
	h.mu.Lock()
	h.keys = all
	h.mu.Unlock()
}

func (h *hookTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	a := &hookAttempt{agency: strings.TrimPrefix(r.URL.Path, "/hook/"), key: r.Header.Get(entitlement.IdempotencyKeyHeader),
		body: body, at: time.Now()}
	h.mu.Lock()
	keys := h.keys
	h.mu.Unlock()
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		h.t.Errorf("webhook %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
	}
	if err := entitlement.VerifyWebhook(body, r.Header.Get(entitlement.WebhookSignatureHeader), keys); err != nil {
		h.t.Errorf("webhook signature of %s does not verify: %v", a.key, err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := json.Unmarshal(body, &a.ev); err != nil || a.ev.ID != a.key || a.key != entitlement.EventID(a.ev.Seq) {
		h.t.Errorf("webhook body %s under Idempotency-Key %q: %v", body, a.key, err)
	}
	h.mu.Lock()
	n := 1
	for _, p := range h.attempts {
		if p.key == a.key {
			n++
		}
	}
	h.attempts = append(h.attempts, a)
	status, location, hold := h.answer(a, n)
	a.wasHeld = hold
	h.mu.Unlock()
	if hold {
		h.held <- *a
		select {
		case <-h.release:
		case <-r.Context().Done():
			h.mu.Lock()
			a.goneAt = time.Now()
			h.mu.Unlock()
			<-h.release
		}
		status = http.StatusNoContent // the agency processed it; the answer reaches nobody
	}
	h.mu.Lock()
	a.status = status
	h.mu.Unlock()
	if location != "" {
		w.Header().Set("Location", location)
	}
	w.WriteHeader(status)
}

// of returns copies of the attempts for key, in arrival order.
func (h *hookTarget) of(key string) []hookAttempt {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []hookAttempt
	for _, a := range h.attempts {
		if a.key == key {
			out = append(out, *a)
		}
	}
	return out
}

// acked counts the attempts for key answered 2xx right away (not held).
func (h *hookTarget) acked(key string) int {
	n := 0
	for _, a := range h.of(key) {
		if a.status >= 200 && a.status < 300 && !a.wasHeld {
			n++
		}
	}
	return n
}

// waitUntil polls cond (no sleeps as synchronisation) up to d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

// agencyAPI is a pension agency (intl profile, client_secret_basic) with a
// webhook URL, registered through the admin API.
type agencyAPI struct {
	id, secret string
	token      string
}

// clientsToken is a token of the bootstrap admin client for /admin/v1/clients.
func clientsToken(t *testing.T, base, data string) string {
	t.Helper()
	creds := readAdminCredentials(t, data)
	return tokenFor(t, base, creds.ClientID, creds.ClientSecret, admin.ScopeClients)
}

func tokenFor(t *testing.T, base, id, secret, scope string) string {
	t.Helper()
	code, body := do(t, http.DefaultClient, "POST", base+"/oauth2/token", strings.NewReader("grant_type=client_credentials&scope="+scope),
		"Content-Type", "application/x-www-form-urlencoded", "Authorization", basicAuth(id, secret))
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if code != 200 || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("token for %s: %d %s", id, code, body)
	}
	return tok.AccessToken
}

func createAgency(t *testing.T, base, adminTok, id, webhook string) *agencyAPI {
	t.Helper()
	spec, _ := json.Marshal(admin.ClientSpec{ID: id, Name: "社保经办机构 " + id, Domain: "agency.example.gov.cn", Profile: "intl",
		AuthMethod: "client_secret_basic", GrantTypes: []string{"client_credentials"}, Scopes: []string{entitlement.ScopeManage},
		WebhookURL: webhook})
	code, body := do(t, http.DefaultClient, "POST", base+"/admin/v1/clients", bytes.NewReader(spec),
		"Authorization", "Bearer "+adminTok, "Content-Type", "application/json")
	var c admin.ClientJSON
	if code != 201 || json.Unmarshal(body, &c) != nil || c.Secret == "" || c.WebhookURL != webhook {
		t.Fatalf("create agency %s: %d %s", id, code, body)
	}
	ag := &agencyAPI{id: id, secret: c.Secret}
	ag.login(t, base)
	return ag
}

func (ag *agencyAPI) login(t *testing.T, base string) {
	ag.token = tokenFor(t, base, ag.id, ag.secret, entitlement.ScopeManage)
}

// register registers a beneficiary (appends beneficiary.registered to the
// agency's feed); n picks a distinct SSN.
func (ag *agencyAPI) register(t *testing.T, base string, n int) {
	t.Helper()
	ssn := ssnFor(fmt.Sprintf("41010519560315%03d", n))
	code, body := do(t, http.DefaultClient, "POST", base+"/entitlement/v1/beneficiaries",
		strings.NewReader(`{"ssn":"`+ssn+`","benefit":"enterprise_pension","anchor":"2025-12-01"}`),
		"Authorization", "Bearer "+ag.token, "Content-Type", "application/json")
	if code != 201 {
		t.Fatalf("register beneficiary %d at %s: %d %s", n, ag.id, code, body)
	}
}

// feed reads the agency's whole event feed and its cursor.
func (ag *agencyAPI) feed(t *testing.T, base string) ([]entitlement.FeedEvent, int64) {
	t.Helper()
	code, body := do(t, http.DefaultClient, "GET", base+"/entitlement/v1/events?after=0&limit=1000", nil, "Authorization", "Bearer "+ag.token)
	var f struct {
		Events []entitlement.FeedEvent `json:"events"`
		Cursor int64                   `json:"cursor"`
	}
	if code != 200 || json.Unmarshal(body, &f) != nil {
		t.Fatalf("feed of %s: %d %s", ag.id, code, body)
	}
	return f.Events, f.Cursor
}

// deadLetters lists the agency's dead-lettered event ids.
func (ag *agencyAPI) deadLetters(t *testing.T, base string) []string {
	t.Helper()
	code, body := do(t, http.DefaultClient, "GET", base+"/entitlement/v1/webhooks/dead-letters", nil, "Authorization", "Bearer "+ag.token)
	var d struct {
		DeadLetters []struct {
			ID       string `json:"id"`
			Attempts int    `json:"attempts"`
		} `json:"dead_letters"`
	}
	if code != 200 || json.Unmarshal(body, &d) != nil {
		t.Fatalf("dead letters of %s: %d %s", ag.id, code, body)
	}
	var ids []string
	for _, x := range d.DeadLetters {
		ids = append(ids, x.ID+"/"+strconv.Itoa(x.Attempts))
	}
	return ids
}

// sameEvent fails unless a delivered body is the feed's event.
func sameEvent(t *testing.T, got hookAttempt, want entitlement.FeedEvent) {
	t.Helper()
	if got.ev.Seq != want.Seq || got.ev.Type != want.Type || got.ev.BeneficiaryID != want.BeneficiaryID ||
		!got.ev.At.Equal(want.At) || !bytes.Equal(got.ev.Data, want.Data) {
		t.Errorf("delivered %s differs from the feed: %s vs %+v", got.key, got.body, want)
	}
}

// webhookFlags are the esscd flags of a fast webhook dispatcher.
func webhookFlags(lease, timeout, base, max string) []string {
	return []string{"--webhook-lease", lease, "--webhook-timeout", timeout, "--webhook-retry-base", base,
		"--webhook-retry-max", max, "--webhook-poll-interval", "50ms"}
}

// TestFaultWebhookTargetFailing runs the esscd binary (SQLite) with an agency
// whose endpoint fails: answered 500, a 307 redirect to plain http and 500
// again, the event is delivered on the 4th attempt (max_attempts 4, from
// ESSC_WEBHOOK_MAX_ATTEMPTS) and acknowledged exactly once; every attempt
// carries the same Idempotency-Key and body and a signature that verifies
// under the published JWKS; the retries wait at least retry_base doubling up
// to retry_max; the redirect is never followed. An endpoint that stays down
// dead-letters the event after exactly max_attempts, later events are not
// held back by it, and a redelivery on demand (the agency API) delivers it
// once the endpoint is back; the feed and the deliveries agree.
func TestFaultWebhookTargetFailing(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: runs the binary")
	}
	dir := t.TempDir()
	buildBinaries(t, dir, "esscd")
	data := filepath.Join(dir, "data")
	hook := newHookTarget(t)
	// The plain-http place a redirect points to; following it would leak the
	// signed event past the https rule of webhook_url.
	var stolenMu sync.Mutex
	stolen := 0
	stolenCount := func() int { stolenMu.Lock(); defer stolenMu.Unlock(); return stolen }
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stolenMu.Lock()
		stolen++
		stolenMu.Unlock()
	}))
	t.Cleanup(plain.Close)
	down := false // guarded by hook.mu
	hook.answer = func(a *hookAttempt, n int) (int, string, bool) {
		switch {
		case down:
			return http.StatusServiceUnavailable, "", false
		case a.ev.Seq == firstSeqOf(hook) && n == 2:
			return http.StatusTemporaryRedirect, plain.URL + "/stolen", false
		case a.ev.Seq == firstSeqOf(hook) && n <= 3:
			return http.StatusInternalServerError, "", false
		}
		return http.StatusOK, "", false
	}

	const maxAttempts = 4
	base := 150 * time.Millisecond
	srv := startESSCD(t, filepath.Join(dir, "esscd"),
		[]string{"SSL_CERT_FILE=" + hook.certFile, "ESSC_WEBHOOK_MAX_ATTEMPTS=" + strconv.Itoa(maxAttempts)},
		append([]string{"--data", data}, webhookFlags("5s", "2s", base.String(), "300ms")...)...)
	api := "http://" + srv.addr
	hook.trust(t, api)
	ag := createAgency(t, api, clientsToken(t, api, data), "agency-retry", hook.url("agency-retry"))

	// 1. Fails three times (500, redirect, 500), then delivered once.
	ag.register(t, api, 201)
	feed, _ := ag.feed(t, api)
	if len(feed) != 1 {
		t.Fatalf("feed after one registration: %+v", feed)
	}
	first := feed[0]
	waitUntil(t, 15*time.Second, "the first event acknowledged", func() bool { return hook.acked(first.ID) == 1 || stolenCount() > 0 })
	if n := stolenCount(); n != 0 {
		t.Fatalf("fail/the webhook redirect to plain http was followed %d times", n)
	}
	tries := hook.of(first.ID)
	if len(tries) != 4 {
		t.Fatalf("attempts of %s: %d, want 4", first.ID, len(tries))
	}
	want := []int{500, 307, 500, 200}
	for i, a := range tries {
		if a.status != want[i] || a.key != first.ID || !bytes.Equal(a.body, tries[0].body) {
			t.Errorf("attempt %d of %s: status %d key %q body %s", i+1, first.ID, a.status, a.key, a.body)
		}
		if i > 0 {
			// The failure is recorded after the answer, so the gap is at
			// least the backoff (a lower bound only: never a timed upper bound).
			min := min(base<<(i-1), 300*time.Millisecond)
			if gap := a.at.Sub(tries[i-1].at); gap < min {
				t.Errorf("retry %d after %v, want at least %v", i, gap, min)
			}
		}
	}
	sameEvent(t, tries[3], first)

	// 2. The endpoint stays down: dead letter after exactly maxAttempts.
	hook.mu.Lock()
	down = true
	hook.mu.Unlock()
	ag.register(t, api, 202)
	feed, _ = ag.feed(t, api)
	second := feed[1]
	waitUntil(t, 15*time.Second, "the second event dead-lettered", func() bool { return len(ag.deadLetters(t, api)) == 1 })
	if dl := ag.deadLetters(t, api); dl[0] != second.ID+"/"+strconv.Itoa(maxAttempts) {
		t.Fatalf("dead letters %v, want %s after %d attempts", dl, second.ID, maxAttempts)
	}
	// The endpoint comes back; a later event is not held back by the dead letter.
	hook.mu.Lock()
	down = false
	hook.mu.Unlock()
	ag.register(t, api, 203)
	feed, _ = ag.feed(t, api)
	third := feed[2]
	waitUntil(t, 15*time.Second, "the third event acknowledged", func() bool { return hook.acked(third.ID) == 1 })
	if tries := hook.of(second.ID); len(tries) != maxAttempts || hook.acked(second.ID) != 0 {
		t.Fatalf("dead-lettered %s: %d attempts, %d acknowledged (want %d, 0: no retry after the dead letter)",
			second.ID, len(tries), hook.acked(second.ID), maxAttempts)
	}

	// 3. Redelivery on demand from the dead letter: it and everything after
	// it are sent again under the same keys.
	code, body := do(t, http.DefaultClient, "POST", api+"/entitlement/v1/webhooks/redeliver",
		strings.NewReader(`{"from_seq":`+strconv.FormatInt(second.Seq, 10)+`}`), "Authorization", "Bearer "+ag.token, "Content-Type", "application/json")
	if code != http.StatusAccepted {
		t.Fatalf("redeliver: %d %s", code, body)
	}
	waitUntil(t, 15*time.Second, "the redelivery", func() bool { return hook.acked(second.ID) == 1 && hook.acked(third.ID) == 2 })
	if dl := ag.deadLetters(t, api); len(dl) != 0 {
		t.Errorf("dead letters after the redelivery: %v", dl)
	}
	feed, cursor := ag.feed(t, api)
	if len(feed) != 3 || cursor != third.Seq {
		t.Fatalf("feed %d events, cursor %d (want 3, %d)", len(feed), cursor, third.Seq)
	}
	for _, e := range feed {
		tries := hook.of(e.ID)
		if len(tries) == 0 {
			t.Fatalf("%s never delivered", e.ID)
		}
		for _, a := range tries {
			if !bytes.Equal(a.body, tries[0].body) {
				t.Errorf("%s: the body changed between attempts:\n%s\n%s", e.ID, tries[0].body, a.body)
			}
			sameEvent(t, a, e)
		}
	}
	hook.mu.Lock()
	total := len(hook.attempts)
	hook.mu.Unlock()
	if want := 4 + maxAttempts + 1 + 1 + 1; total != want {
		t.Errorf("the endpoint saw %d requests, want %d", total, want)
	}
	srv.alive(t)
	srv.stop(t)
	srv.noPanic(t)
	if !strings.Contains(srv.logs.String(), "webhook dead-lettered") {
		t.Errorf("no dead-letter warning in the log")
	}
}

// firstSeqOf is the seq of the first attempt the endpoint saw (hook.mu held).
func firstSeqOf(h *hookTarget) int64 {
	if len(h.attempts) == 0 {
		return 0
	}
	return h.attempts[0].ev.Seq
}

// webhookCursors reads each agency's webhook cursor from the registry
// (read-only; the dispatcher's durable position, not exposed by the API).
func webhookCursors(t *testing.T, db string) map[string][2]int64 {
	t.Helper()
	sqlDB, err := dbsql.Open("sqlite", "file:"+db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	rows, err := sqlDB.Query("SELECT agency_id, cursor_seq, attempts FROM webhook_state")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][2]int64{}
	for rows.Next() {
		var id string
		var cur, att int64
		if err := rows.Scan(&id, &cur, &att); err != nil {
			t.Fatal(err)
		}
		out[id] = [2]int64{cur, att}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFaultSIGKILLDuringWebhookDelivery runs the esscd binary (SQLite, lease
// 12 s) with two agencies whose endpoint holds the first delivery of each:
// esscd is killed with SIGKILL while both are in flight (their requests end
// only with the process) and restarted on the same data directory; the
// endpoint then processes the held requests, whose answers reach nobody.
// Every event of both feeds — those queued behind the held ones and those
// registered after the restart — is acknowledged by the restarted server
// (none lost); the held events are delivered again with the same
// Idempotency-Key and the same body; per agency the first deliveries come
// in feed order; the dispatcher's durable cursor ends at the feed's last
// event with no attempts pending and no dead letters.
func TestFaultSIGKILLDuringWebhookDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: runs the binary")
	}
	dir := t.TempDir()
	buildBinaries(t, dir, "esscd")
	data := filepath.Join(dir, "data")
	hook := newHookTarget(t)
	heldAgencies := map[string]bool{} // guarded by hook.mu
	hook.answer = func(a *hookAttempt, _ int) (int, string, bool) {
		if !heldAgencies[a.agency] {
			heldAgencies[a.agency] = true
			return 0, "", true
		}
		return http.StatusNoContent, "", false
	}
	bin := filepath.Join(dir, "esscd")
	env := []string{"SSL_CERT_FILE=" + hook.certFile}
	// A request timeout well above the time the second agency's delivery
	// takes to start (CI under load once took ~2 s): both must still be in
	// flight at the kill. The lease (≥ 2 × timeout) bounds the wait after
	// the restart.
	args := append([]string{"--data", data}, webhookFlags("12s", "6s", "100ms", "1s")...)
	srv := startESSCD(t, bin, env, args...)
	api := "http://" + srv.addr
	hook.trust(t, api)
	adminTok := clientsToken(t, api, data)
	agencies := []*agencyAPI{
		createAgency(t, api, adminTok, "agency-a", hook.url("agency-a")),
		createAgency(t, api, adminTok, "agency-b", hook.url("agency-b")),
	}
	n := 300
	for i := 0; i < 3; i++ {
		for _, ag := range agencies {
			n++
			ag.register(t, api, n)
		}
	}
	var held []hookAttempt
	for len(held) < 2 {
		select {
		case a := <-hook.held:
			held = append(held, a)
		case <-time.After(15 * time.Second):
			t.Fatalf("the dispatcher never started both deliveries (%d held)", len(held))
		}
	}

	// SIGKILL with both deliveries in flight.
	killedAt := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-srv.done:
		if st, ok := srv.cmd.ProcessState.Sys().(syscall.WaitStatus); err == nil || !ok || st.Signal() != syscall.SIGKILL {
			t.Fatalf("esscd did not die of SIGKILL: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("esscd survived SIGKILL")
	}
	for _, a := range held {
		if got := hook.of(a.key); len(got) != 1 {
			t.Fatalf("%s: %d attempts before the kill, want the one held", a.key, len(got))
		}
	}

	// Restart on the same data directory; more events; release the endpoint.
	srv = startESSCD(t, bin, env, args...)
	api = "http://" + srv.addr
	for _, ag := range agencies {
		ag.login(t, api)
		n++
		ag.register(t, api, n)
	}
	hook.releaseHeld()

	feeds := map[string][]entitlement.FeedEvent{}
	for _, ag := range agencies {
		feeds[ag.id], _ = ag.feed(t, api)
		if len(feeds[ag.id]) != 4 {
			t.Fatalf("feed of %s: %d events, want 4", ag.id, len(feeds[ag.id]))
		}
	}
	waitUntil(t, 25*time.Second, "every event acknowledged after the restart", func() bool {
		for _, f := range feeds {
			for _, e := range f {
				if hook.acked(e.ID) == 0 {
					return false
				}
			}
		}
		return true
	})

	// The held deliveries: in flight at the kill, re-sent under the same key.
	for _, a := range held {
		tries := hook.of(a.key)
		if !tries[0].wasHeld || tries[0].status != http.StatusNoContent {
			t.Fatalf("%s: first attempt %+v", a.key, tries[0])
		}
		t.Logf("%s held: sender gone %v after the kill, delivered again %d time(s)", a.key, tries[0].goneAt.Sub(killedAt), len(tries)-1)
		if g := tries[0].goneAt; g.IsZero() || g.Before(killedAt) {
			t.Errorf("%s: the held request's sender went away at %v, kill at %v (want: in flight until the kill)", a.key, g, killedAt)
		}
		if len(tries) < 2 {
			t.Fatalf("fail/%s was never delivered again after the kill", a.key)
		}
		for _, r := range tries[1:] {
			if r.key != a.key || !bytes.Equal(r.body, a.body) {
				t.Errorf("%s redelivered as %q with body %s (was %s)", a.key, r.key, r.body, a.body)
			}
		}
	}
	// Nothing lost, nothing foreign, in feed order, same content.
	seen := map[string]bool{}
	for _, ag := range agencies {
		var order []int64
		for _, e := range feeds[ag.id] {
			seen[e.ID] = true
			tries := hook.of(e.ID)
			for _, a := range tries {
				if a.agency != ag.id {
					t.Errorf("%s of %s delivered to %s", e.ID, ag.id, a.agency)
				}
				sameEvent(t, a, e)
			}
		}
		hook.mu.Lock()
		for _, a := range hook.attempts {
			if a.agency == ag.id && !a.wasHeld && a.status == http.StatusNoContent && (len(order) == 0 || a.ev.Seq > order[len(order)-1]) {
				order = append(order, a.ev.Seq)
			}
		}
		hook.mu.Unlock()
		if len(order) != len(feeds[ag.id]) {
			t.Errorf("%s: acknowledged deliveries out of feed order: %v", ag.id, order)
		}
	}
	hook.mu.Lock()
	for _, a := range hook.attempts {
		if !seen[a.key] {
			t.Errorf("delivered %s, which is in no feed", a.key)
		}
	}
	hook.mu.Unlock()

	// The durable cursor agrees with the feed and the deliveries.
	db := filepath.Join(data, "registry.db")
	waitUntil(t, 10*time.Second, "the webhook cursors at the end of the feeds", func() bool {
		cur := webhookCursors(t, db)
		for _, ag := range agencies {
			f := feeds[ag.id]
			if cur[ag.id] != [2]int64{f[len(f)-1].Seq, 0} {
				return false
			}
		}
		return true
	})
	for _, ag := range agencies {
		if dl := ag.deadLetters(t, api); len(dl) != 0 {
			t.Errorf("%s: dead letters %v", ag.id, dl)
		}
		if f, cursor := ag.feed(t, api); cursor != f[len(f)-1].Seq {
			t.Errorf("%s: feed cursor %d, last event %d", ag.id, cursor, f[len(f)-1].Seq)
		}
	}
	srv.alive(t)
	srv.stop(t)
	srv.noPanic(t)
}
