package entitlement_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/storage"
)

// receiver is an agency's webhook endpoint: it verifies signatures, can be
// down (503) or hang, and records what it accepted per idempotency key.
type receiver struct {
	t        *testing.T
	e        *env
	down     atomic.Bool
	hangSeq  atomic.Int64 // hang (until the request is abandoned) on this seq, once
	hung     chan struct{}
	attempts atomic.Int64

	mu       sync.Mutex
	accepted map[string]entitlement.FeedEvent // idempotency key → event
	order    []entitlement.FeedEvent          // first acceptance order
	dupes    int                              // same key seen again after acceptance
}

func newReceiver(t *testing.T, e *env) (*receiver, *httptest.Server) {
	r := &receiver{t: t, e: e, accepted: map[string]entitlement.FeedEvent{}, hung: make(chan struct{}, 1)}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.attempts.Add(1)
	body, _ := io.ReadAll(r.Body)
	if err := entitlement.VerifyWebhook(body, r.Header.Get(entitlement.WebhookSignatureHeader), rc.e.keys); err != nil {
		rc.t.Errorf("webhook signature: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var ev entitlement.FeedEvent
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID != r.Header.Get(entitlement.IdempotencyKeyHeader) {
		rc.t.Errorf("webhook body %s / key %q", body, r.Header.Get(entitlement.IdempotencyKeyHeader))
	}
	if rc.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if s := rc.hangSeq.Load(); s != 0 && s == ev.Seq && rc.hangSeq.CompareAndSwap(s, 0) {
		rc.hung <- struct{}{}
		<-r.Context().Done() // the dispatcher is stopped mid-delivery
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if prev, ok := rc.accepted[ev.ID]; ok {
		rc.dupes++
		if string(prev.Data) != string(ev.Data) || prev.Seq != ev.Seq {
			rc.t.Errorf("key %s reused for different content", ev.ID)
		}
	} else {
		rc.accepted[ev.ID] = ev
		rc.order = append(rc.order, ev)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) count() int { rc.mu.Lock(); defer rc.mu.Unlock(); return len(rc.accepted) }

// check asserts the receiver holds exactly the feed: one accepted delivery
// per event, in Seq order per beneficiary, same content as the feed.
func (rc *receiver) check(t *testing.T, feed []storage.EntitlementEvent) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.accepted) != len(feed) {
		t.Fatalf("receiver accepted %d distinct events, feed has %d", len(rc.accepted), len(feed))
	}
	for _, f := range feed {
		got, ok := rc.accepted[entitlement.EventID(f.Seq)]
		if !ok || got.Type != f.Type || got.BeneficiaryID != f.BeneficiaryID || string(got.Data) != string(f.Payload) {
			t.Fatalf("feed event %d missing or different at the receiver", f.Seq)
		}
	}
	last := map[string]int64{}
	for _, ev := range rc.order {
		if ev.Seq <= last[ev.BeneficiaryID] {
			t.Fatalf("beneficiary %s: event %d after %d", ev.BeneficiaryID, ev.Seq, last[ev.BeneficiaryID])
		}
		last[ev.BeneficiaryID] = ev.Seq
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// produce writes a realistic mix of events for agency-gm: registrations,
// certifications (several per beneficiary) and an update.
func produce(t *testing.T, e *env, people int) {
	ctx := context.Background()
	for i := 0; i < people; i++ {
		p := e.person(t)
		v := e.register(t, "agency-gm", p, time.Date(2023, 1, 10, 0, 0, 0, 0, entitlement.CST()))
		if _, err := e.svc.Certify(ctx, e.certifyInput(t, p)); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := e.svc.Update(ctx, "agency-gm", v.ID, entitlement.UpdateInput{Version: v.Version + 1, Benefit: entitlement.BenefitWorkInjury}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func dispatcher(t *testing.T, e *env, owner string, maxAttempts int) *entitlement.Dispatcher {
	d, err := entitlement.NewDispatcher(entitlement.DispatcherConfig{Service: e.svc, Owner: owner,
		Interval: 10 * time.Millisecond, Lease: 500 * time.Millisecond, Batch: 5, MaxAttempts: maxAttempts,
		Backoff:       func(int) time.Duration { return 20 * time.Millisecond },
		SweepInterval: -1, CardInterval: -1, Logger: quiet,
		HTTPClient: &http.Client{Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func webhookEnv(t *testing.T, open func(t *testing.T) *env) (*env, *receiver) {
	e := open(t)
	rc, srv := newReceiver(t, e)
	e.client(t, storage.Client{ID: "agency-gm", Name: "省社保中心", Profile: storage.ProfileGM, Sector: "sector-gm",
		Scopes: []string{entitlement.ScopeManage}, WebhookURL: srv.URL + "/hook"})
	return e, rc
}

func TestWebhooksReceiverDownThenUp(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	engines(t, func(t *testing.T, open func(t *testing.T) *env) {
		e, rc := webhookEnv(t, open)
		rc.down.Store(true)
		produce(t, e, 4)
		e.clock.Run()
		d := dispatcher(t, e, "d1", 1000)
		if err := d.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer d.Stop()
		waitFor(t, "retries while down", func() bool { return rc.attempts.Load() >= 5 })
		if rc.count() != 0 {
			t.Fatal("accepted while down")
		}
		produce(t, e, 2) // more events while the receiver is down
		rc.down.Store(false)
		feed := e.events(t, "agency-gm")
		waitFor(t, "all events delivered", func() bool { return rc.count() == len(feed) })
		d.Stop()
		rc.check(t, feed)
		if rc.dupes != 0 {
			t.Fatalf("%d duplicate deliveries without a failure", rc.dupes)
		}
	})
}

func TestWebhooksDispatcherRestartedMidDelivery(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	engines(t, func(t *testing.T, open func(t *testing.T) *env) {
		e, rc := webhookEnv(t, open)
		produce(t, e, 4)
		feed := e.events(t, "agency-gm")
		rc.hangSeq.Store(feed[4].Seq)
		e.clock.Run()
		d1 := dispatcher(t, e, "d1", 1000)
		if err := d1.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		<-rc.hung
		d1.Stop() // crash mid-delivery: the cursor is before the hung event
		if got := rc.count(); got != 4 {
			t.Fatalf("before restart: %d accepted, want 4", got)
		}
		d2 := dispatcher(t, e, "d2", 1000)
		if err := d2.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer d2.Stop()
		waitFor(t, "all events delivered after restart", func() bool { return rc.count() == len(feed) })
		d2.Stop()
		rc.check(t, feed)
	})
}

func TestWebhooksDeadLetterAndRedeliver(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	engines(t, func(t *testing.T, open func(t *testing.T) *env) {
		e, rc := webhookEnv(t, open)
		ctx := context.Background()
		rc.down.Store(true)
		produce(t, e, 2)
		feed := e.events(t, "agency-gm")
		e.clock.Run()
		d := dispatcher(t, e, "d1", 3)
		if err := d.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer d.Stop()
		waitFor(t, "every event dead-lettered", func() bool {
			dl, err := e.svc.DeadLetters(ctx, "agency-gm", 0, 100)
			return err == nil && len(dl) == len(feed)
		})
		if got := rc.attempts.Load(); got != int64(3*len(feed)) {
			t.Fatalf("attempts = %d, want exactly 3 per event (%d)", got, 3*len(feed))
		}
		rc.down.Store(false)
		if err := e.svc.Redeliver(ctx, "agency-gm", feed[0].Seq); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "redelivery", func() bool { return rc.count() == len(feed) })
		d.Stop()
		rc.check(t, feed)
		if dl, _ := e.svc.DeadLetters(ctx, "agency-gm", 0, 100); len(dl) != 0 {
			t.Fatalf("dead letters after redelivery: %d", len(dl))
		}
	})
}

// TestWebhooksHangingAgencyHoldsOnlyItself: while one agency's endpoint
// hangs on a delivery (up to the request timeout), an event for another
// agency is delivered at once. Before, the dispatcher waited for every
// delivery of a round before claiming again, so the second agency waited
// for the first one's timeout.
func TestWebhooksHangingAgencyHoldsOnlyItself(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	engines(t, func(t *testing.T, open func(t *testing.T) *env) {
		e, hanging := webhookEnv(t, open)
		other, srv := newReceiver(t, e)
		e.client(t, storage.Client{ID: "agency-b", Name: "市养老保险处", Profile: storage.ProfileGM, Sector: "sector-b",
			Scopes: []string{entitlement.ScopeManage}, WebhookURL: srv.URL + "/hook"})
		produce(t, e, 1)
		hanging.hangSeq.Store(e.events(t, "agency-gm")[0].Seq)
		e.clock.Run()
		const timeout = 20 * time.Second
		d, err := entitlement.NewDispatcher(entitlement.DispatcherConfig{Service: e.svc, Owner: "d1",
			Interval: 10 * time.Millisecond, Lease: 2 * timeout, SweepInterval: -1, CardInterval: -1, Logger: quiet,
			HTTPClient: &http.Client{Timeout: timeout}})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer d.Stop()
		<-hanging.hung
		e.register(t, "agency-b", e.person(t), time.Date(2023, 1, 10, 0, 0, 0, 0, entitlement.CST()))
		start := time.Now()
		for other.count() == 0 {
			if time.Since(start) > timeout/4 {
				t.Fatalf("agency-b's event not delivered within %v while agency-gm's endpoint hangs", timeout/4)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("agency-b delivered %v after its event, agency-gm still hanging", time.Since(start).Round(time.Millisecond))
		d.Stop()
	})
}
