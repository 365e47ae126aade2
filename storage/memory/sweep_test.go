package memory

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/essc-project/essc/storage"
)

// TestSweepBoundsMemory: expired items are dropped by the periodic sweep even
// if nobody reads them again, so a long-running embedded server does not grow.
func TestSweepBoundsMemory(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newSweepStore(t, func() time.Time { return now })
	ctx := context.Background()
	for i := range 3000 {
		putToken(t, s, ctx, now, fmt.Sprint("at", i), time.Minute)
		if _, err := s.Seen(ctx, "ns", fmt.Sprint(i), time.Minute); err != nil {
			t.Fatal(err)
		}
		if i == 1500 {
			now = now.Add(2 * time.Minute) // everything so far has expired
		}
	}
	s.mu.Lock()
	items, idx, exp := len(s.items), len(s.reqIdx), len(s.expiring)
	s.mu.Unlock()
	if items >= 3000 || idx >= 3000 || exp >= 3000 {
		t.Fatalf("expired entries not swept: items=%d reqIdx=%d expiring=%d", items, idx, exp)
	}
}

// TestSweepEveryMap: each kind of entry is dropped by later writes once it
// has expired, without being read again; an entry written again with a later
// expiry outlives the second its first expiry was filed under.
func TestSweepEveryMap(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	now := start
	s := newSweepStore(t, func() time.Time { return now })
	ctx := context.Background()
	at := func(d time.Duration) { now = start.Add(d) }
	write := func() { // an unrelated write: it runs the sweep
		t.Helper()
		if _, err := s.Seen(ctx, "tick", now.String(), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (n [7]int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		exp := 0
		for k := range s.expiring {
			if !strings.HasPrefix(k, "seen:tick:") {
				exp++
			}
		}
		return [7]int{len(s.items), len(s.reqIdx), len(s.subjIdx), exp, len(s.qr), len(s.sso), len(s.ssoSubj)}
	}

	// Short-lived entries of every kind (10 s) ...
	sess := openid.NewDefaultSession()
	sess.Subject = "holder-1"
	sess.SetExpiresAt(fosite.AccessToken, now.Add(10*time.Second))
	r := &fosite.Request{ID: "req-1", Client: &fosite.DefaultClient{ID: "c"}, Session: sess}
	if err := s.CreateAccessTokenSession(ctx, "at-1", r); err != nil {
		t.Fatal(err)
	}
	if err := s.SetClientAssertionJWT(ctx, "jti-1", now.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seen(ctx, "replay", "k", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.PutOnce(ctx, "once", "k", []byte("v"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allow(ctx, "rate", 5, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateQR(ctx, storage.QRTransaction{ID: "qr-1", State: "pending", ExpiresAt: now.Add(10 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSSO(ctx, storage.SSOSession{ID: "sso-1", Subject: "holder-1", ExpiresAt: now.Add(10 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if got, want := count(), [7]int{1, 1, 1, 4, 1, 1, 1}; got != want {
		t.Fatalf("after writing: %v, want %v", got, want)
	}
	// The access token written again before it expires, now for a minute:
	// the sweep of its first second must leave it, and its subject, alone.
	at(6 * time.Second)
	sess2 := openid.NewDefaultSession()
	sess2.Subject = "holder-1"
	sess2.SetExpiresAt(fosite.AccessToken, now.Add(time.Minute))
	if err := s.CreateAccessTokenSession(ctx, "at-1", &fosite.Request{ID: "req-1", Client: &fosite.DefaultClient{ID: "c"}, Session: sess2}); err != nil {
		t.Fatal(err)
	}

	at(11 * time.Second) // the short-lived ones are due; nothing reads them
	for range 4 {
		write()
	}
	if got, want := count(), [7]int{1, 1, 1, 0, 0, 0, 0}; got != want {
		t.Fatalf("at 11 s: %v, want %v (items, reqIdx, subjIdx, expiring, qr, sso, ssoSubj)", got, want)
	}
	if n, err := s.RevokeSubject(ctx, "holder-1", ""); err != nil || n != 1 {
		t.Fatalf("the token written again was swept with its first expiry: %d revoked, %v", n, err)
	}

	at(2 * time.Minute)
	write()
	if got, want := count(), [7]int{0, 0, 0, 0, 0, 0, 0}; got != want {
		t.Fatalf("at 2 min: %v, want %v", got, want)
	}
}

// TestSweepLeavesRecreated: an entry that expired and was created again
// under the same key before the sweep reached its first second (writes lag
// behind a busy second) is not dropped by that second's reference.
func TestSweepLeavesRecreated(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	now := start
	s := newSweepStore(t, func() time.Time { return now })
	ctx := context.Background()
	for i := range 3 * sweepBudget { // three writes' budgets due first, at 4 s
		putToken(t, s, ctx, now, fmt.Sprint("at", i), 4*time.Second)
	}
	if _, err := s.CreateQR(ctx, storage.QRTransaction{ID: "qr", State: "pending", ExpiresAt: now.Add(5 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutOnce(ctx, "once", "k", []byte("v"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSSO(ctx, storage.SSOSession{ID: "sso", Subject: "h", ExpiresAt: now.Add(5 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	now = start.Add(6 * time.Second) // the next three writes' sweeps take tokens only
	if _, err := s.CreateSSO(ctx, storage.SSOSession{ID: "sso", Subject: "h", ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateQR(ctx, storage.QRTransaction{ID: "qr", State: "pending", ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutOnce(ctx, "once", "k", []byte("w"), time.Minute); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.Seen(ctx, "tick", fmt.Sprint(i), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.GetQR(ctx, "qr"); err != nil {
		t.Fatalf("the recreated QR transaction was swept: %v", err)
	}
	if _, err := s.GetSSO(ctx, "sso"); err != nil {
		t.Fatalf("the recreated sign-on session was swept: %v", err)
	}
	if v, err := s.TakeOnce(ctx, "once", "k"); err != nil || string(v) != "w" {
		t.Fatalf("the recreated once-record was swept: %q, %v", v, err)
	}
}

// TestSweepBudget: a second holding more expiries than one write may drop is
// finished by the following writes; a clock jump of a year skips the empty
// seconds.
func TestSweepBudget(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	now := start
	s := newSweepStore(t, func() time.Time { return now })
	ctx := context.Background()
	for i := range 5 * sweepBudget {
		putToken(t, s, ctx, now, fmt.Sprint("at", i), time.Second)
	}
	now = start.Add(365 * 24 * time.Hour)
	live := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.items)
	}
	for i := range 5 {
		putToken(t, s, ctx, now, fmt.Sprint("new", i), time.Hour)
		if got, want := live(), 5*sweepBudget-(i+1)*sweepBudget+i+1; got != want {
			t.Fatalf("after write %d: %d items, want %d", i, got, want)
		}
	}
	s.mu.Lock()
	due := len(s.expiries.due)
	s.mu.Unlock()
	if due != 1 {
		t.Fatalf("%d seconds still filed, want 1 (the new tokens')", due)
	}
}

func newSweepStore(tb testing.TB, now func() time.Time) *Store {
	s, err := New(Config{Now: now,
		Lookup:     func(context.Context, string) (fosite.Client, error) { return &fosite.DefaultClient{}, nil },
		NewSession: func() fosite.Session { return openid.NewDefaultSession() }})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// putToken stores access token raw (request id "r"+raw) expiring ttl after now.
func putToken(tb testing.TB, s *Store, ctx context.Context, now time.Time, raw string, ttl time.Duration) {
	sess := openid.NewDefaultSession()
	sess.SetExpiresAt(fosite.AccessToken, now.Add(ttl))
	r := &fosite.Request{ID: "r" + raw, Client: &fosite.DefaultClient{ID: "c"}, Session: sess}
	if err := s.CreateAccessTokenSession(ctx, raw, r); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkWriteLargeStore: one token write and one replay record into a
// store already holding `live` unexpired tokens, with a slowly moving clock
// so entries expire as the run goes (as in a long-running embedded server).
// The cost of finding what expired must not grow with what is still live.
func BenchmarkWriteLargeStore(b *testing.B) {
	for _, live := range []int{1_000, 100_000, 400_000} {
		b.Run(fmt.Sprint("live=", live), func(b *testing.B) {
			now := time.Unix(1_800_000_000, 0)
			s := newSweepStore(b, func() time.Time { return now })
			ctx := context.Background()
			for i := range live {
				putToken(b, s, ctx, now, fmt.Sprint("live", i), time.Hour)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%100 == 0 {
					now = now.Add(10 * time.Millisecond)
				}
				putToken(b, s, ctx, now, fmt.Sprint("t", i), 5*time.Second)
				if _, err := s.Seen(ctx, "ns", fmt.Sprint(i), 5*time.Second); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
