package memory

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
)

// TestSweepBoundsMemory: expired items are dropped by the periodic sweep even
// if nobody reads them again, so a long-running embedded server does not grow.
func TestSweepBoundsMemory(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, err := New(Config{Now: func() time.Time { return now },
		Lookup:     func(context.Context, string) (fosite.Client, error) { return &fosite.DefaultClient{}, nil },
		NewSession: func() fosite.Session { return openid.NewDefaultSession() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3000 {
		sess := openid.NewDefaultSession()
		sess.SetExpiresAt(fosite.AccessToken, now.Add(time.Minute))
		r := &fosite.Request{ID: fmt.Sprint("r", i), Client: &fosite.DefaultClient{ID: "c"}, Session: sess}
		if err := s.CreateAccessTokenSession(ctx, fmt.Sprint("at", i), r); err != nil {
			t.Fatal(err)
		}
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
