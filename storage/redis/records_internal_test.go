package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/storage"
)

func TestQRRecord(t *testing.T) {
	in := storage.QRTransaction{ID: "txn", State: "scanned", Version: 7, ClientID: "portal|with|bars",
		BindingHash: []byte{0, '|', 0xff}, CreatedAt: time.UnixMilli(1_700_000_000_123), ExpiresAt: time.UnixMilli(1_700_000_180_123),
		Data: []byte(`{"n":1}` + "\x00|\n")}
	rec := encodeQR(in)
	if !bytes.HasPrefix(rec, []byte("1700000180123|7|scanned|")) {
		t.Fatalf("header %q", rec[:30])
	}
	out, err := decodeQR("txn", rec)
	if err != nil || out.State != in.State || out.Version != in.Version || out.ClientID != in.ClientID ||
		!bytes.Equal(out.BindingHash, in.BindingHash) || !out.CreatedAt.Equal(in.CreatedAt) || !out.ExpiresAt.Equal(in.ExpiresAt) ||
		!bytes.Equal(out.Data, in.Data) {
		t.Fatalf("round trip: %+v %v", out, err)
	}
	for name, bad := range map[string]string{
		"empty":            "",
		"no fields":        "123",
		"no state end":     "123|1|pending",
		"bad expiry":       "x|1|pending|",
		"bad version":      "123|v|pending|",
		"no rest":          "123|1|pending|",
		"client too long":  "123|1|pending|\x09ab",
		"binding too long": "123|1|pending|\x00\x05a",
		"no created-at":    "123|1|pending|\x00\x00",
	} {
		if _, err := decodeQR("txn", []byte(bad)); !errors.Is(err, errQRRecord) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, st := range []string{"", "a|b"} {
		if validQRState(st) {
			t.Errorf("state %q accepted", st)
		}
	}
}

func TestItemRecord(t *testing.T) {
	exp := time.UnixMilli(1_700_000_600_000)
	rec := encodeItem(exp, "accesshash", []byte("z\x00|payload|"))
	if string(rec[:len("1700000600000|0|0|accesshash|")]) != "1700000600000|0|0|accesshash|" {
		t.Fatalf("header %q", rec)
	}
	it, err := decodeItem(rec)
	if err != nil || it.expires != exp.UnixMilli() || it.invalidated || it.rotatedAt != 0 || string(it.data) != "z\x00|payload|" {
		t.Fatalf("round trip: %+v %v", it, err)
	}
	// What the scripts write back: invalidated, rotated.
	it, err = decodeItem([]byte("1700000600000|1|1700000000001||{}"))
	if err != nil || !it.invalidated || it.rotatedAt != 1_700_000_000_001 || string(it.data) != "{}" {
		t.Fatalf("script-written record: %+v %v", it, err)
	}
	for name, bad := range map[string]string{
		"empty":         "",
		"short":         "1|0|0",
		"bad expiry":    "x|0|0||{}",
		"bad flag":      "1|2|0||{}",
		"bad rotated":   "1|0|t||{}",
		"empty flag":    "1||0||{}",
		"hash (old v1)": "\x0f\x00",
	} {
		if _, err := decodeItem([]byte(bad)); !errors.Is(err, errItemRecord) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestIndexHorizon: an index write sets the index's TTL to the horizon, or
// to the entry's own TTL when that is longer (which also raises the
// horizon), so a later short-lived entry never shortens the index below an
// earlier long-lived one.
func TestIndexHorizon(t *testing.T) {
	s, c := internalStore(t, "essc-test-index:")
	ctx := context.Background()
	key := s.key(kindSubject, "holder:h1")
	defer c.Del(ctx, key)
	write := func(member string, ttl time.Duration) time.Duration {
		t.Helper()
		if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			s.index(ctx, p, key, ttl.Milliseconds(), indexMember{member: member})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		d, err := c.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	near := func(got, want time.Duration) bool { return got <= want && got > want-time.Minute }
	if d := write("a", time.Minute); !near(d, time.Hour) {
		t.Fatalf("short entry: index TTL %v, want the 1h horizon", d)
	}
	if d := write("b", 3*time.Hour); !near(d, 3*time.Hour) {
		t.Fatalf("long entry: index TTL %v, want its 3h", d)
	}
	if d := write("c", time.Minute); !near(d, 3*time.Hour) {
		t.Fatalf("a short entry after a long one: index TTL %v, want 3h kept", d)
	}
	if n, _ := c.HLen(ctx, key).Result(); n != 3 {
		t.Fatalf("index holds %d members, want 3", n)
	}
}

// internalStore opens a Store on ESSC_TEST_REDIS_URL (skips when unset).
func internalStore(t *testing.T, prefix string) (*Store, *redis.Client) {
	t.Helper()
	url := os.Getenv("ESSC_TEST_REDIS_URL")
	if url == "" {
		t.Skip("ESSC_TEST_REDIS_URL not set: Redis backend not tested")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	s, err := New(Config{Client: c, Prefix: prefix, Lookup: func(context.Context, string) (fosite.Client, error) { return nil, nil },
		NewSession: func() fosite.Session { return nil }, IndexTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, c
}

// TestRateCounterExpires: a rate window's counter carries the window's
// expiry from its first hit, and later hits keep it (no counter outlives
// its window).
func TestRateCounterExpires(t *testing.T) {
	s, c := internalStore(t, "essc-test-rate:")
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		d, err := s.Allow(ctx, "ip:1", 5, time.Minute)
		if err != nil || d.Remaining != 5-i {
			t.Fatalf("hit %d: %+v %v", i, d, err)
		}
	}
	keys, err := c.Keys(ctx, "essc-test-rate:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("counter keys %v %v", keys, err)
	}
	defer c.Del(ctx, keys...)
	if d, _ := c.PTTL(ctx, keys[0]).Result(); d <= 0 || d > 62*time.Second {
		t.Fatalf("counter TTL %v, want at most the window (+1 s)", d)
	}
}

// TestRateCounterRecreated: a counter that vanished within its window
// (evicted, flushed) while this process remembers the window is recreated by
// INCR and gets its expiry back; a window this process has not seen starts
// with SET NX even when another replica created the counter.
func TestRateCounterRecreated(t *testing.T) {
	s, c := internalStore(t, "essc-test-rate2:")
	ctx := context.Background()
	if d, err := s.Allow(ctx, "dev:1", 5, time.Minute); err != nil || d.Remaining != 4 {
		t.Fatalf("first hit: %+v %v", d, err)
	}
	keys, err := c.Keys(ctx, "essc-test-rate2:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("counter keys %v %v", keys, err)
	}
	defer c.Del(ctx, keys...)
	c.Del(ctx, keys[0])
	if d, err := s.Allow(ctx, "dev:1", 5, time.Minute); err != nil || d.Remaining != 4 {
		t.Fatalf("hit after the counter vanished: %+v %v", d, err)
	}
	if d, _ := c.PTTL(ctx, keys[0]).Result(); d <= 0 || d > 62*time.Second {
		t.Fatalf("recreated counter TTL %v, want the window's", d)
	}
	other, _ := internalStore(t, "essc-test-rate2:") // another replica, same Redis
	if d, err := other.Allow(ctx, "dev:1", 5, time.Minute); err != nil || d.Remaining != 3 {
		t.Fatalf("another replica's hit: %+v %v", d, err)
	}
}

func TestAuthRecordParts(t *testing.T) {
	var ps authParts
	ps[partCode], ps[partOIDC] = []byte(`{"id":"c|1:"}`), []byte("o")
	body := ps.encode(nil)
	if string(body) != `c13:{"id":"c|1:"}o1:o` {
		t.Fatalf("encoded %q", body)
	}
	got, err := decodeParts(append(body, "p2:pkc0:"...)) // later parts: PKCE added, code deleted
	if err != nil || got[partCode] != nil || string(got[partPKCE]) != "pk" || string(got[partOIDC]) != "o" {
		t.Fatalf("decoded %q %v", got, err)
	}
	for name, bad := range map[string]string{
		"unknown tag":  "x1:a",
		"no length":    "c:a",
		"no colon":     "c12",
		"bad length":   "c1a:a",
		"too long":     "c5:abc",
		"negative":     "c-1:a",
		"json (old)":   `{"id":"x"}`,
		"trailing tag": "c1:ap",
	} {
		if _, err := decodeParts([]byte(bad)); !errors.Is(err, errAuthRecord) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestAuthPartScript: outside a batch, parts are set and deleted in place
// (a repeated create replaces its part, the record does not grow) and a
// longer-lived part raises the record's expiry.
func TestAuthPartScript(t *testing.T) {
	s, c := internalStore(t, "essc-test-ac:")
	ctx := context.Background()
	k := s.key(kindAuth, "sig")
	defer c.Del(ctx, k)
	now := time.Now()
	exp := now.Add(time.Minute).UnixMilli()
	var ps authParts
	ps[partCode] = []byte("code-1")
	if err := s.writeParts(ctx, k, exp, ps); err != nil {
		t.Fatal(err)
	}
	ps = authParts{}
	ps[partPKCE] = []byte("pkce-1")
	for range 3 {
		if err := s.writeParts(ctx, k, exp, ps); err != nil {
			t.Fatal(err)
		}
	}
	ps[partPKCE] = nil
	ps[partOIDC] = []byte("oidc-1")
	if err := s.writeParts(ctx, k, exp+60_000, ps); err != nil {
		t.Fatal(err)
	}
	if err := s.deletePart(ctx, "sig", partPKCE); err != nil {
		t.Fatal(err)
	}
	got, _ := c.Get(ctx, k).Result()
	want := fmt.Sprintf("%d|0|0||c6:code-1o6:oidc-1", exp+60_000)
	if got != want {
		t.Fatalf("record %q, want %q", got, want)
	}
	if d, _ := c.PTTL(ctx, k).Result(); d < 110*time.Second {
		t.Fatalf("TTL %v: the longer-lived part did not raise it", d)
	}
	c.Set(ctx, k, fmt.Sprintf("%d|0|0||c9:short", exp), time.Minute)
	if err := s.deletePart(ctx, "sig", partOIDC); err == nil {
		t.Fatal("a malformed record was changed without an error")
	}
}

// FuzzDecodeParts: any body either fails with errAuthRecord or decodes to
// parts that encode and decode to themselves.
func FuzzDecodeParts(f *testing.F) {
	f.Add([]byte(`c13:{"id":"c|1:"}o1:o`))
	f.Add([]byte("p2:pkc0:"))
	f.Add([]byte("c99999999999999999999:"))
	f.Fuzz(func(t *testing.T, body []byte) {
		ps, err := decodeParts(body)
		if err != nil {
			if !errors.Is(err, errAuthRecord) {
				t.Fatalf("error %v is not errAuthRecord", err)
			}
			return
		}
		again, err := decodeParts(ps.encode(nil))
		if err != nil || !equalParts(again, ps) {
			t.Fatalf("round trip %q -> %q, %v", ps, again, err)
		}
	})
}

func equalParts(a, b authParts) bool {
	for i := range a {
		if !bytes.Equal(a[i], b[i]) || (a[i] == nil) != (b[i] == nil) {
			return false
		}
	}
	return true
}

// TestQRSwapRefused: a whole-record transition swaps the record in with
// SET … GET and puts the old one back when the check fails, so a refused
// transition (state moved, version moved, store-clock expiry) leaves the
// stored bytes and the TTL as they were; an accepted one that shortens the
// expiry also shortens the TTL.
func TestQRSwapRefused(t *testing.T) {
	s, c := internalStore(t, "essc-test-qrswap:")
	ctx := context.Background()
	create := func(id string) storage.QRTransaction {
		t.Helper()
		c.Del(ctx, s.key(kindQR, id))
		t.Cleanup(func() { c.Del(ctx, s.key(kindQR, id)) })
		cur, err := s.CreateQR(ctx, storage.QRTransaction{ID: id, State: "pending", ClientID: "portal", BindingHash: []byte("bh"),
			ExpiresAt: s.now().Add(2 * time.Minute), Data: []byte(`{"n":1}`)})
		if err != nil {
			t.Fatal(err)
		}
		return cur
	}
	snapshot := func(id string) (string, time.Duration) {
		t.Helper()
		v, err := c.Get(ctx, s.key(kindQR, id)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return v, c.PTTL(ctx, s.key(kindQR, id)).Val()
	}
	mutate := func(q *storage.QRTransaction) error { q.Data = []byte(`{"n":2}`); return nil }
	for name, tc := range map[string]struct {
		prepare func(cur storage.QRTransaction) storage.QRTransaction
		want    error
	}{
		"state moved":   {func(cur storage.QRTransaction) storage.QRTransaction { cur.State = "scanned"; return cur }, storage.ErrStateConflict},
		"version moved": {func(cur storage.QRTransaction) storage.QRTransaction { cur.Version = 9; return cur }, errVersionMoved},
	} {
		cur := tc.prepare(create("txn-" + name))
		before, ttl := snapshot(cur.ID)
		_, err := s.mutateFrom(ctx, cur, "approved", mutate)
		if !errors.Is(err, tc.want) {
			t.Fatalf("%s: %v, want %v", name, err, tc.want)
		}
		after, ttl2 := snapshot(cur.ID)
		if after != before || ttl2 > ttl || ttl2 < ttl-5*time.Second {
			t.Fatalf("%s: refused transition changed the record (%q → %q) or its TTL (%v → %v)", name, before, after, ttl, ttl2)
		}
	}
	// Expired by the store clock but still in Redis: refused as not found,
	// the record left alone.
	cur := create("txn-expired")
	before, _ := snapshot(cur.ID)
	if _, err := s.run(ctx, "transition qr", qrCAS, []string{s.key(kindQR, cur.ID)}, ms(cur.ExpiresAt), "pending", "approved",
		"1", "1", encodeQRRest(cur), ms(cur.ExpiresAt), 1000, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetQR(ctx, cur.ID); err != nil {
		t.Fatalf("store-clock expiry: %v", err)
	}
	if after, _ := snapshot(cur.ID); after != before {
		t.Fatalf("a transition of an expired record wrote %q", after)
	}
	// Accepted: the new record is stored, a shorter expiry shortens the TTL.
	cur = create("txn-ok")
	next, err := s.mutateFrom(ctx, cur, "scanned", func(q *storage.QRTransaction) error {
		q.ExpiresAt = s.now().Add(30 * time.Second)
		return nil
	})
	if err != nil || next.Version != 2 || next.State != "scanned" {
		t.Fatalf("accepted transition: %+v %v", next, err)
	}
	got, ttl := snapshot(cur.ID)
	if !bytes.Equal([]byte(got), encodeQR(next)) || ttl > 31*time.Second || ttl < 25*time.Second {
		t.Fatalf("accepted transition stored %q with TTL %v", got, ttl)
	}
}

// TestRequestList: a grant's first tokens create its request index with one
// command carrying the index horizon; a refresh appends; a revocation also
// reads an index written before 2026-11-29 (a hash under "req:").
func TestRequestList(t *testing.T) {
	s, c := internalStore(t, "essc-test-reqlist:")
	ctx := context.Background()
	key, legacy := s.reqKey("grant-1"), s.key(kindReq, "grant-1")
	c.Del(ctx, key, legacy)
	t.Cleanup(func() { c.Del(ctx, key, legacy) })
	l := &reqList{key: key, members: []string{"at:a1", "rt:r1"}, ttl: time.Minute.Milliseconds(), fresh: true}
	cmds, err := s.pipe(ctx, "test", func(p redis.Pipeliner) { l.list(ctx, s, p) })
	if err != nil || len(cmds) != 1 {
		t.Fatalf("first tokens: %d commands, %v", len(cmds), err)
	}
	if v, _ := c.Get(ctx, key).Result(); v != "at:a1,rt:r1" {
		t.Fatalf("index %q", v)
	}
	if d := c.PTTL(ctx, key).Val(); d <= 59*time.Minute || d > time.Hour {
		t.Fatalf("index TTL %v, want the 1h horizon", d)
	}
	l = &reqList{key: key, members: []string{"at:a2"}, ttl: time.Minute.Milliseconds()}
	if _, err := s.pipe(ctx, "test", func(p redis.Pipeliner) { l.list(ctx, s, p) }); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, key).Result(); v != "at:a1,rt:r1,at:a2" {
		t.Fatalf("index after a refresh %q", v)
	}
	// The tokens themselves, and one listed only by a legacy hash index.
	for _, k := range []string{"at:a1", "rt:r1", "at:a2", "at:old"} {
		c.Set(ctx, s.memberKey(k), "x", time.Minute)
		t.Cleanup(func() { c.Del(ctx, s.memberKey(k)) })
	}
	c.HSet(ctx, legacy, "at:old", "1")
	n, err := s.revoke(ctx, []string{"grant-1"}, true)
	if err != nil || n != 1 {
		t.Fatalf("revoke: %d, %v", n, err)
	}
	for _, k := range []string{"at:a1", "rt:r1", "at:a2", "at:old"} {
		if c.Exists(ctx, s.memberKey(k)).Val() != 0 {
			t.Errorf("%s survived the revocation", k)
		}
	}
	if c.Exists(ctx, key, legacy).Val() != 0 {
		t.Error("the indexes survived the revocation")
	}
}

// TestSubjectWindows: a grant's subject-index entry is one command in a
// window string that outlives it (SET NX PX for the window's first entry,
// APPEND after, from this or another replica); revocation reads the
// current and the previous window and the hash; entries living longer than
// the window, or that a window string cannot hold, go to the hash.
func TestSubjectWindows(t *testing.T) {
	s, c := internalStore(t, "essc-test-windows:")
	ctx := context.Background()
	t.Cleanup(func() {
		if keys, _ := c.Keys(ctx, "essc-test-windows:*").Result(); len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	w := time.Hour.Milliseconds()
	now := (time.Now().UnixMilli()/w)*w + w - 1000 // a second before a window ends
	s.now = func() time.Time { return time.UnixMilli(now) }
	other, _ := internalStore(t, "essc-test-windows:") // a second replica: nothing remembered
	other.now = s.now
	key := s.key(kindSubject, "holder:h1")
	write := func(st *Store, key, rid, tag string, ttl time.Duration) {
		t.Helper()
		var fix func() error
		if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			fix = st.indexSubject(ctx, p, key, ttl.Milliseconds(), []indexMember{{rid, tag}})
			return nil
		}); err != nil && !errors.Is(err, redis.Nil) { // SET NX found the window
			t.Fatal(err)
		}
		if err := fix(); err != nil {
			t.Fatal(err)
		}
		// every grant has a token to revoke: its request index and one item
		m := "at:" + strings.ReplaceAll(rid, ",", "_")
		c.Set(ctx, s.reqKey(rid), m, time.Hour)
		c.Set(ctx, s.memberKey(m), "token", time.Hour)
	}
	window := func(key string) string {
		t.Helper()
		wk, _ := s.subjectWindow(key, now)
		v, err := c.Get(ctx, wk).Result()
		if err != nil {
			t.Fatalf("window string: %v", err)
		}
		if d, _ := c.PTTL(ctx, wk).Result(); d < time.Hour || d > time.Hour+2*time.Second {
			t.Fatalf("window TTL %v, want the window's remaining second plus 1h", d)
		}
		return v
	}

	write(s, key, "r1", "e1", 30*time.Minute)
	write(other, key, "r2", "e2", time.Hour) // SET NX finds it: appends
	write(s, key, "r3", "e1", time.Minute)   // remembered: APPEND
	if v := window(key); v != "r1 e1,r2 e2,r3 e1," {
		t.Fatalf("window string %q", v)
	}
	write(s, key, "r4", "e1", 2*time.Hour) // outlives the window: the hash
	write(s, key, "r,5", "e1", time.Minute)
	if v := window(key); v != "r1 e1,r2 e2,r3 e1," {
		t.Fatalf("window string %q after the long-lived and the odd entry", v)
	}
	if n, _ := c.HLen(ctx, key).Result(); n != 2 {
		t.Fatalf("hash holds %d entries, want r4 and r,5", n)
	}
	// A remembered window string that is gone: APPEND creates it, then PEXPIRE.
	key2 := s.key(kindSubject, "holder:h2")
	write(s, key2, "q1", "e1", time.Minute)
	wk2, _ := s.subjectWindow(key2, now)
	c.Del(ctx, wk2)
	write(s, key2, "q2", "e1", time.Minute)
	if v := window(key2); v != "q2 e1," {
		t.Fatalf("recreated window string %q", v)
	}

	// An hour later (the next window) both windows are still read: the
	// entries written in the previous one are found; the tag selects.
	now += w
	n, err := s.RevokeSubject(ctx, "holder:h1", "e2")
	if err != nil || n != 1 {
		t.Fatalf("revoke tag e2 a window later: %d, %v", n, err)
	}
	if c.Exists(ctx, s.memberKey("at:r2")).Val() != 0 || c.Exists(ctx, s.memberKey("at:r1")).Val() != 1 {
		t.Fatal("revoking tag e2 must delete r2's token only")
	}
	n, err = other.RevokeSubject(ctx, "holder:h1", "")
	if err != nil || n != 4 { // r1, r3 (window), r4 and r,5 (hash)
		t.Fatalf("revoke all: %d, %v", n, err)
	}
	if n, _ := c.HLen(ctx, key).Result(); n != 0 {
		t.Fatalf("the hash entries revoked stay: %d", n)
	}
	// Two windows later nothing written before is read (it has expired).
	write(s, key, "r6", "e1", time.Minute)
	now += 2 * w
	if n, err := s.RevokeSubject(ctx, "holder:h1", ""); err != nil || n != 0 {
		t.Fatalf("revoke two windows later: %d, %v", n, err)
	}
}

// TestGlobEscape: a key prefix's glob characters match only themselves in
// the hub's pattern, so a replica is not sent another prefix's wake-ups.
func TestGlobEscape(t *testing.T) {
	if got, want := globEscape(`essc-a*b?[c]\^:qrc:`), `essc-a\*b\?\[c\]\\\^:qrc:`; got != want {
		t.Fatalf("globEscape = %q, want %q", got, want)
	}
	if h := newHub(nil, "p*:2:qrc:", nil); h.pattern != `p\*:2:qrc:*` {
		t.Fatalf("pattern %q", h.pattern)
	}
}

// TestWakePayloads: a wake-up whose payload is not a record (NotifyQR's "1",
// an older replica's, or anything malformed) reaches the watcher as nil, so
// it reads the transaction instead of trusting the payload; a record is
// delivered decoded under the watched id.
func TestWakePayloads(t *testing.T) {
	s, c := internalStore(t, "essc-test-wake:")
	ctx := context.Background()
	ch, cancel, err := s.WatchQR(ctx, "txn-p")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	next := func(what string) *storage.QRTransaction {
		t.Helper()
		select {
		case rec := <-ch:
			return rec
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: no wake-up", what)
		}
		return nil
	}
	channel := s.qrChannel("txn-p")
	for _, junk := range []string{"1", "", "garbage", "1|2|scanned", "x|1|scanned|\x00"} {
		if err := c.Publish(ctx, channel, junk).Err(); err != nil {
			t.Fatal(err)
		}
		if rec := next(fmt.Sprintf("payload %q", junk)); rec != nil {
			t.Fatalf("payload %q woke with a record %+v", junk, rec)
		}
	}
	want := storage.QRTransaction{ID: "other-id", State: "scanned", Version: 4, ClientID: "portal", BindingHash: []byte("bh"),
		CreatedAt: time.UnixMilli(1_700_000_000_000), ExpiresAt: time.UnixMilli(1_700_000_120_000), Data: []byte(`{"n":1}`)}
	if err := c.Publish(ctx, channel, encodeQR(want)).Err(); err != nil {
		t.Fatal(err)
	}
	rec := next("a record")
	if rec == nil || rec.ID != "txn-p" || rec.State != "scanned" || rec.Version != 4 || string(rec.Data) != `{"n":1}` {
		t.Fatalf("record payload woke with %+v", rec)
	}
}
