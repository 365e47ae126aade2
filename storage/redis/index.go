package redisstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The subject index lists a holder's grants for RevokeSubject (card events,
// "not me", logout). Its entries live in one string per window of W = the
// configured IndexTTL (12 h by default) in which they were written:
// "…sub:{h}:<n>", n = now / W, holding "requestID tag," entries. A window's
// string expires W after the window ends, so it outlives every entry
// written into it whose grant lives at most W, and a revocation at any time
// reads the current and the previous window. Writing an entry is therefore
// one command, without touching the expiry: SET NX PX for a window's first
// entry, APPEND for later ones (the store remembers the windows it wrote, to
// send the likelier command first; a wrong guess costs a second command,
// never a lost entry). The hash that held every entry with a sliding TTL
// (HSET and PEXPIRE, two commands per grant) still takes the entries that
// live longer than W (a client with a longer refresh lifetime) and is read
// by every revocation.
//
// Revoked entries are not removed from the window strings: revoking a
// revoked grant again finds no token, and the strings expire.

// subjectWindow is the window string of subject index k at time now (ms) and
// the time it expires (ms).
func (s *Store) subjectWindow(k string, now int64) (key string, end int64) {
	n := now / s.window
	return k + ":" + strconv.FormatInt(n, 10), (n + 2) * s.window
}

// subjectEntries encodes entries for a window string; ok is false when a
// request id or tag cannot be encoded (then the hash takes them).
func subjectEntries(entries []indexMember) (v string, ok bool) {
	var b strings.Builder
	for _, e := range entries {
		if e.member == "" || strings.ContainsAny(e.member, ", ") || strings.ContainsAny(e.tag, ", ") {
			return "", false
		}
		b.WriteString(e.member)
		b.WriteByte(' ')
		b.WriteString(e.tag)
		b.WriteByte(',')
	}
	return b.String(), true
}

// indexSubject adds entries, of grants living ttl ms at most, to subject
// index k in p. The returned fix runs after p was sent without error: it
// appends when the SET NX found the window's string already there (another
// replica wrote it), and gives an expiry to a string APPEND had to create
// (the remembered window had expired or been deleted).
func (s *Store) indexSubject(ctx context.Context, p redis.Pipeliner, k string, ttl int64, entries []indexMember) (fix func() error) {
	v, ok := subjectEntries(entries)
	if !ok || ttl > s.window {
		s.index(ctx, p, k, ttl, entries...)
		return func() error { return nil }
	}
	now := ms(s.now())
	wk, end := s.subjectWindow(k, now)
	if s.windows.hit(wk, end, now) {
		app := p.Append(ctx, wk, v)
		return func() error { return s.expireCreated(ctx, wk, v, end, app) }
	}
	set := p.SetArgs(ctx, wk, v, redis.SetArgs{Mode: "NX", TTL: time.Duration(end-now) * time.Millisecond})
	return func() error {
		if !errors.Is(set.Err(), redis.Nil) {
			return nil // created (pipe reported any other error)
		}
		return s.expireCreated(ctx, wk, v, end, s.c.Append(ctx, wk, v))
	}
}

// expireCreated sets the expiry of window string wk when app (an APPEND of v)
// created it.
func (s *Store) expireCreated(ctx context.Context, wk, v string, end int64, app *redis.IntCmd) error {
	n, err := app.Result()
	if err != nil || n != int64(len(v)) {
		return wrap("index subject", err)
	}
	ttl := max(end-ms(s.now()), 1)
	return wrap("index subject", s.c.PExpire(ctx, wk, time.Duration(ttl)*time.Millisecond).Err())
}

// RevokeSubject deletes the tokens of every request indexed under subject
// (with tag, when it is not empty): it reads the hash and the two window
// strings in one round trip, revokes, then removes exactly the hash entries
// it read (one a concurrent login added in between stays).
func (s *Store) RevokeSubject(ctx context.Context, subject, tag string) (int, error) {
	k := s.key(kindSubject, subject)
	now := ms(s.now())
	prev, _ := s.subjectWindow(k, now-s.window)
	cur, _ := s.subjectWindow(k, now)
	var hash *redis.MapStringStringCmd
	var lists [2]*redis.StringCmd
	if _, err := s.pipe(ctx, "revoke subject", func(p redis.Pipeliner) {
		hash = p.HGetAll(ctx, k)
		lists[0], lists[1] = p.Get(ctx, prev), p.Get(ctx, cur)
	}); err != nil {
		return 0, err
	}
	var rids, hashed []string
	seen := map[string]bool{}
	add := func(rid, t string) bool {
		if (tag != "" && t != tag) || seen[rid] {
			return false
		}
		seen[rid] = true
		rids = append(rids, rid)
		return true
	}
	for rid, t := range hash.Val() {
		if add(rid, t) {
			hashed = append(hashed, rid)
		}
	}
	for _, l := range lists {
		for e := range strings.SplitSeq(l.Val(), ",") {
			if rid, t, _ := strings.Cut(e, " "); rid != "" {
				add(rid, t)
			}
		}
	}
	if len(rids) == 0 {
		return 0, nil
	}
	n, err := s.revoke(ctx, rids, true)
	if err != nil || len(hashed) == 0 {
		return n, err
	}
	return n, wrap("revoke subject: delete entries", s.c.HDel(ctx, k, hashed...).Err())
}
