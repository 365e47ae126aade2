package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/storage"
	redisstore "github.com/essc-project/essc/storage/redis"
	"github.com/essc-project/essc/storage/storagetest"
)

// testClient returns a client for ESSC_TEST_REDIS_URL: skips when unset,
// FAILS when set but unreachable.
func testClient(t testing.TB) redis.UniversalClient {
	t.Helper()
	url := os.Getenv("ESSC_TEST_REDIS_URL")
	if url == "" {
		t.Skip("ESSC_TEST_REDIS_URL not set: Redis backend not tested")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("ESSC_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("ESSC_TEST_REDIS_URL=%s set but unreachable: %v", url, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// randomPrefix gives each test its own key space and deletes it afterwards.
func randomPrefix(t testing.TB, c redis.UniversalClient) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	p := "essc-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, p+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return p
}

func newStore(t testing.TB, c redis.UniversalClient, o storagetest.Options) *redisstore.Store {
	s, err := redisstore.New(redisstore.Config{Client: c, Prefix: randomPrefix(t, c), Now: o.Now, Lookup: o.Lookup,
		NewSession: o.NewSession, Subjects: o.Subjects, RefreshGrace: o.RefreshGrace})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	c := testClient(t)
	storagetest.Run(t, func(t *testing.T, o storagetest.Options) storage.Sessions {
		return newStore(t, c, o)
	})
}

// TestConformanceCluster runs the suite on Redis Cluster when
// ESSC_TEST_REDIS_CLUSTER_ADDRS (comma-separated host:port of the masters)
// is set: it proves every script and pipeline is single-slot (a cross-slot
// command fails with CROSSSLOT there).
func TestConformanceCluster(t *testing.T) {
	addrs := os.Getenv("ESSC_TEST_REDIS_CLUSTER_ADDRS")
	if addrs == "" {
		t.Skip("ESSC_TEST_REDIS_CLUSTER_ADDRS not set: Redis Cluster not tested")
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("ESSC_TEST_REDIS_CLUSTER_ADDRS=%s set but unreachable: %v", addrs, err)
	}
	storagetest.Run(t, func(t *testing.T, o storagetest.Options) storage.Sessions {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		s, err := redisstore.New(redisstore.Config{Client: c, Prefix: "essc-test:" + hex.EncodeToString(b) + ":", Now: o.Now,
			Lookup: o.Lookup, NewSession: o.NewSession, Subjects: o.Subjects, RefreshGrace: o.RefreshGrace})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// watchStore is a Store on c under prefix for the QR watch tests.
func watchStore(t *testing.T, c redis.UniversalClient, prefix string) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(redisstore.Config{Client: c, Prefix: prefix,
		Lookup:     func(context.Context, string) (fosite.Client, error) { return &fosite.DefaultClient{}, nil },
		NewSession: func() fosite.Session { return openid.NewDefaultSession() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestWakeAcrossReplicas: two Stores on separate connections (two replicas)
// — a transition on one wakes the watcher on the other.
func TestWakeAcrossReplicas(t *testing.T) {
	c1 := testClient(t)
	opt, _ := redis.ParseURL(os.Getenv("ESSC_TEST_REDIS_URL"))
	c2 := redis.NewClient(opt)
	defer c2.Close()
	prefix := randomPrefix(t, c1)
	browser, phone := watchStore(t, c1, prefix), watchStore(t, c2, prefix)
	ctx := context.Background()
	if _, err := browser.CreateQR(ctx, storage.QRTransaction{ID: "t1", State: "pending", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	ch, cancel, err := browser.WatchQR(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if _, err := phone.TransitionQR(ctx, "t1", "pending", "scanned", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case rec := <-ch:
		if rec == nil || rec.State != "scanned" || rec.Version != 2 {
			t.Fatalf("the wake-up carried %+v, want the scanned record", rec)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("browser replica not woken by the phone replica's transition")
	}
}

// TestWatchOnePattern: a replica's watchers share one pattern subscription
// (no SUBSCRIBE per transaction); a wake-up reaches the watchers of its own
// transaction only, also when another store's prefix would match this
// store's pattern without its glob characters quoted (TestGlobEscape).
func TestWatchOnePattern(t *testing.T) {
	c := testClient(t)
	base := randomPrefix(t, c)
	opt, _ := redis.ParseURL(os.Getenv("ESSC_TEST_REDIS_URL"))
	opt.ClientName = strings.ReplaceAll(strings.TrimSuffix(base, ":"), ":", "-")
	named := redis.NewClient(opt) // its pub/sub connection is found by name in CLIENT LIST
	defer named.Close()
	globbed, other := watchStore(t, named, base+"g*?:"), watchStore(t, c, base+"ga?:")
	ctx := context.Background()
	var chans []<-chan *storage.QRTransaction
	for _, id := range []string{"t1", "t2", "t3"} {
		if _, err := globbed.CreateQR(ctx, storage.QRTransaction{ID: id, State: "pending", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		ch, cancel, err := globbed.WatchQR(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		chans = append(chans, ch)
	}
	list, err := c.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	var subs []string
	for _, l := range strings.Split(list, "\n") {
		if strings.Contains(l, " name="+opt.ClientName+" ") && (!strings.Contains(l, " psub=0 ") || !strings.Contains(l, " sub=0 ")) {
			f := strings.Fields(l)
			subs = append(subs, strings.Join(slices.DeleteFunc(f, func(s string) bool {
				return !strings.HasPrefix(s, "sub=") && !strings.HasPrefix(s, "psub=")
			}), " "))
		}
	}
	if len(subs) != 1 || subs[0] != "sub=0 psub=1" {
		t.Fatalf("the replica's pub/sub connections: %q, want one with one pattern and no channel", subs)
	}
	if _, err := other.CreateQR(ctx, storage.QRTransaction{ID: "t1", State: "pending", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.TransitionQR(ctx, "t1", "pending", "scanned", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := globbed.TransitionQR(ctx, "t2", "pending", "scanned", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-chans[1]:
	case <-time.After(3 * time.Second):
		t.Fatal("the watcher of t2 was not woken")
	}
	select {
	case <-chans[0]:
		t.Fatal("another prefix's transaction woke t1's watcher")
	case <-chans[2]:
		t.Fatal("t2's transition woke t3's watcher")
	case <-time.After(200 * time.Millisecond):
	}
}

// TestOutage: a client pointed at a closed port gives ErrUnavailable, never
// ErrNotFound, on every kind of operation.
func TestOutage(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	s, err := redisstore.New(redisstore.Config{Client: c, Prefix: "x:",
		Lookup:     func(context.Context, string) (fosite.Client, error) { return &fosite.DefaultClient{ID: "c"}, nil },
		NewSession: func() fosite.Session { return openid.NewDefaultSession() }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	req := fosite.NewAccessRequest(openid.NewDefaultSession())
	req.Client = &fosite.DefaultClient{ID: "c"}
	ops := map[string]func() error{
		"ping":            func() error { return s.Ping(ctx) },
		"get code":        func() error { _, err := s.GetAuthorizeCodeSession(ctx, "c", nil); return err },
		"invalidate code": func() error { return s.InvalidateAuthorizeCodeSession(ctx, "c") },
		"create access":   func() error { return s.CreateAccessTokenSession(ctx, "a", req) },
		"get refresh":     func() error { _, err := s.GetRefreshTokenSession(ctx, "r", nil); return err },
		"rotate":          func() error { return s.RotateRefreshToken(ctx, "id", "r") },
		"revoke":          func() error { return s.RevokeRefreshToken(ctx, "id") },
		"revoke subject":  func() error { _, err := s.RevokeSubject(ctx, "s", ""); return err },
		"revoke by tag":   func() error { _, err := s.RevokeSubject(ctx, "s", "t"); return err },
		"jti valid":       func() error { return s.ClientAssertionJWTValid(ctx, "j") },
		"get qr":          func() error { _, err := s.GetQR(ctx, "q"); return err },
		"transition qr":   func() error { _, err := s.TransitionQR(ctx, "q", "a", "b", nil); return err },
		"watch qr":        func() error { _, _, err := s.WatchQR(ctx, "q"); return err },
		"get sso":         func() error { _, err := s.GetSSO(ctx, "s"); return err },
		"seen":            func() error { _, err := s.Seen(ctx, "n", "k", time.Minute); return err },
		"allow":           func() error { _, err := s.Allow(ctx, "k", 1, time.Minute); return err },
		"take once":       func() error { _, err := s.TakeOnce(ctx, "n", "k"); return err },
	}
	for name, op := range ops {
		t.Run("fail/"+name, func(t *testing.T) {
			t.Parallel()
			err := op()
			if !errors.Is(err, storage.ErrUnavailable) {
				t.Fatalf("got %v, want ErrUnavailable", err)
			}
			if errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("outage reported as not-found: %v", err)
			}
		})
	}
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	if _, err := redisstore.New(redisstore.Config{}); !errors.Is(err, storage.ErrInvalidArgument) {
		t.Fatalf("got %v", err)
	}
}
