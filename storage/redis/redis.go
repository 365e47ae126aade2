package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/storage"
)

// Config configures a Store.
type Config struct {
	// Client is the connection (required): *redis.Client, *redis.ClusterClient
	// or a Sentinel failover client.
	Client redis.UniversalClient
	// Prefix starts every key and channel; default "essc:". Give each
	// deployment (and each test) its own.
	Prefix string
	// Now is the clock for every expiry decision; nil means time.Now.
	Now func() time.Time
	// Lookup resolves the client of a stored request (required).
	Lookup storage.LookupClient
	// NewSession returns an empty session of the provider's type (required).
	NewSession storage.NewSessionFunc
	// Subjects lists the RevokeSubject subjects of a request; nil means
	// storage.SessionSubject.
	Subjects storage.SubjectsFunc
	// RefreshGrace: 0 means storage.DefaultRefreshGrace, negative disables it.
	RefreshGrace time.Duration
	// FallbackTTL bounds items whose session has no expiry; 0 means
	// storage.DefaultFallbackTTL.
	FallbackTTL time.Duration
	// IndexTTL is how long a revocation index (by request, by subject, SSO
	// sessions by subject) lives after its last write: at least the longest
	// lifetime of what is indexed (refresh tokens, SSO sessions). 0 means
	// FallbackTTL, which is also the provider's default refresh lifetime. A
	// longer-lived entry than IndexTTL raises it for this process.
	IndexTTL time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// keyFormat versions the record layout under the configured prefix. Format
// 2 (2026-11-29) keeps fosite items and QR transactions as one string key
// each; records of an older format are never read (they read as absent and
// expire on their own), so all replicas must be upgraded together and
// sessions from before the upgrade sign in again (docs/OPERATIONS.md).
const keyFormat = "2:"

// Store is the Redis storage.Sessions.
type Store struct {
	c        redis.UniversalClient
	p        string
	now      func() time.Time
	codec    *storage.RequestCodec // DEFLATE: tokens, kept for hours in Redis memory
	plain    *storage.RequestCodec // plain JSON: codes, PKCE, OIDC and PAR records, gone within minutes
	subjects storage.SubjectsFunc
	grace    time.Duration
	fallback time.Duration
	indexTTL atomic.Int64 // ms; only grows (index)
	log      *slog.Logger
	hub      *hub
	rates    windowMemo
	window   int64      // ms: the subject index's window, IndexTTL as configured (index.go)
	windows  windowMemo // subject-index windows this process wrote
}

var _ storage.Sessions = (*Store)(nil)

// New validates cfg and returns a Store. It does not contact Redis; use Ping.
func New(cfg Config) (*Store, error) {
	if cfg.Client == nil || cfg.Lookup == nil || cfg.NewSession == nil {
		return nil, fmt.Errorf("%w: redisstore.Config needs Client, Lookup and NewSession", storage.ErrInvalidArgument)
	}
	s := &Store{
		c:        cfg.Client,
		p:        cfg.Prefix,
		now:      cfg.Now,
		codec:    storage.NewRequestCodec(cfg.Lookup, cfg.NewSession),
		plain:    &storage.RequestCodec{Lookup: cfg.Lookup, NewSession: cfg.NewSession, Plain: true},
		subjects: cfg.Subjects,
		grace:    cfg.RefreshGrace,
		fallback: cfg.FallbackTTL,
		log:      cfg.Logger,
	}
	if s.p == "" {
		s.p = "essc:"
	}
	s.p += keyFormat
	if s.now == nil {
		s.now = time.Now
	}
	if s.subjects == nil {
		s.subjects = storage.SessionSubject
	}
	if s.grace == 0 {
		s.grace = storage.DefaultRefreshGrace
	} else if s.grace < 0 {
		s.grace = 0
	}
	if s.fallback <= 0 {
		s.fallback = storage.DefaultFallbackTTL
	}
	s.indexTTL.Store(cfg.IndexTTL.Milliseconds())
	if cfg.IndexTTL <= 0 {
		s.indexTTL.Store(s.fallback.Milliseconds())
	}
	s.window = s.indexTTL.Load()
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.hub = newHub(s.c, s.p+"qrc:", s.log) // the channels of qrChannel
	return s, nil
}

// Close stops the shared pub/sub subscription. It does not close Client,
// which the caller owns.
func (s *Store) Close() error { return s.hub.close() }

// LoadScripts loads the Lua scripts into Redis (every master on Cluster).
// Optional: call it at start-up so the first operations do not pay a
// NOSCRIPT round trip; after a Redis restart the store reloads by itself.
func (s *Store) LoadScripts(ctx context.Context) error {
	return wrap("load scripts", loadScripts(ctx, s.c))
}

// Ping checks that Redis answers; ErrUnavailable if not.
func (s *Store) Ping(ctx context.Context) error {
	return wrap("ping", s.c.Ping(ctx).Err())
}

// wrap classifies a go-redis error: redis.Nil → ErrNotFound, a Redis error
// reply → plain error, anything else (network, timeout, closed, pool) →
// ErrUnavailable.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("redis %s: %w", op, storage.ErrNotFound)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !errors.Is(err, redis.ErrClosed) && !isBusy(err) {
		return fmt.Errorf("redis %s: %w", op, err)
	}
	return fmt.Errorf("redis %s: %w: %w", op, storage.ErrUnavailable, err)
}

// isBusy reports replies that mean "the server cannot serve now" rather than
// a bad command: LOADING, BUSY, MASTERDOWN, CLUSTERDOWN, TRYAGAIN.
func isBusy(err error) bool {
	for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// ttlMS is the Redis TTL for an item expiring at exp: the clock distance
// plus a second of slack (the clock decides; the TTL only collects garbage).
func (s *Store) ttlMS(exp time.Time) int64 {
	d := exp.Sub(s.now()) + time.Second
	if d < time.Second {
		d = time.Second
	}
	return d.Milliseconds()
}

// index adds entries to the revocation index key in pipeline p: a hash
// (member -> tag, "1" for none; small hashes keep Redis's compact listpack
// encoding) whose TTL every write sets to the index horizon, at least ttlMS.
// Two plain commands, no script: the horizon outlives every entry, so a
// write never shortens the life of an earlier, longer-lived one.
func (s *Store) index(ctx context.Context, p redis.Pipeliner, key string, ttlMS int64, entries ...indexMember) {
	fields := make([]any, 0, 2*len(entries))
	for _, e := range entries {
		fields = append(fields, e.member, cmp.Or(e.tag, "1"))
	}
	p.HSet(ctx, key, fields...)
	p.PExpire(ctx, key, time.Duration(s.horizon(ttlMS))*time.Millisecond)
}

// horizon is the TTL (ms) an index write sets: the index horizon, raised
// for good by an entry that lives longer.
func (s *Store) horizon(ttlMS int64) int64 {
	h := s.indexTTL.Load()
	for ttlMS > h && !s.indexTTL.CompareAndSwap(h, ttlMS) {
		h = s.indexTTL.Load()
	}
	return max(h, ttlMS)
}

func (s *Store) key(kind, raw string) string {
	return s.p + kind + ":{" + storage.HashKey(kind, raw) + "}"
}

// rec returns the two keys of a record: metadata hash and payload string
// (same hash tag, same slot).
func rec(meta string) []string { return []string{meta, meta + ":d"} }

// getRec reads a record in one command; a nil meta map means absent.
func (s *Store) getRec(ctx context.Context, op, meta string) (map[string]string, []byte, error) {
	v, err := s.run(ctx, op, getRecord, rec(meta))
	if err != nil {
		return nil, nil, err
	}
	res, _ := v.([]any)
	if len(res) != 2 {
		return nil, nil, fmt.Errorf("redis %s: unexpected reply %v", op, v)
	}
	m := pairs(res[0])
	if len(m) == 0 {
		return nil, nil, nil
	}
	d, _ := res[1].(string)
	return m, []byte(d), nil
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// pipe executes cmds (EvalSha in a pipeline); on NOSCRIPT it loads
// the scripts and retries once. One round trip in the normal case.
func (s *Store) pipe(ctx context.Context, op string, fill func(p redis.Pipeliner)) ([]redis.Cmder, error) {
	for attempt := 0; ; attempt++ {
		p := s.c.Pipeline()
		fill(p)
		cmds, err := p.Exec(ctx)
		if err != nil && attempt == 0 && hasNoScript(cmds) {
			if lerr := loadScripts(ctx, s.c); lerr != nil {
				return nil, wrap(op, lerr)
			}
			continue
		}
		if err != nil { // the first error that is not a nil reply (SET NX …)
			for _, c := range cmds {
				if e := c.Err(); e != nil && !errors.Is(e, redis.Nil) {
					return cmds, wrap(op, e)
				}
			}
		}
		return cmds, nil
	}
}

// batch holds back the writes of one request (storage.Batcher).
type batch struct {
	mu   sync.Mutex
	ops  []func(redis.Pipeliner)
	auth map[string]*authEntry // authorization-code records by key (codes.go)
	idx  map[string]*batchIndex
	req  map[string]*reqList
}

// addReq merges l into the batch's list for the same request index.
func (b *batch) addReq(l *reqList) {
	if b.req == nil {
		b.req = map[string]*reqList{}
	}
	cur := b.req[l.key]
	if cur == nil {
		b.req[l.key] = l
		return
	}
	cur.members = append(cur.members, l.members...)
	cur.ttl = max(cur.ttl, l.ttl)
	cur.fresh = cur.fresh && l.fresh
}

// batchIndex is what a batch adds to one subject index.
type batchIndex struct {
	entries []indexMember
	ttl     int64 // ms, the longest of the entries'
}

func (b *batch) addIndex(e indexEntry, ttl int64) {
	if b.idx == nil {
		b.idx = map[string]*batchIndex{}
	}
	bi := b.idx[e.key]
	if bi == nil {
		bi = &batchIndex{}
		b.idx[e.key] = bi
	}
	if !slices.Contains(bi.entries, e.indexMember) {
		bi.entries = append(bi.entries, e.indexMember)
	}
	bi.ttl = max(bi.ttl, ttl)
}

type batchKey struct{ s *Store }

// Batch implements storage.Batcher: creates and PKCE/OIDC deletes made with
// the returned context wait for flush, which sends them in one pipeline
// (the creates of one code's records as one SET); reads of an authorization
// code's record are made once per batch (codes.go).
func (s *Store) Batch(ctx context.Context) (context.Context, func(context.Context) error) {
	b := &batch{}
	return context.WithValue(ctx, batchKey{s}, b), func(ctx context.Context) error {
		b.mu.Lock()
		ops, auth, idx, req := b.ops, b.auth, b.idx, b.req
		b.ops, b.auth, b.idx, b.req = nil, nil, nil, nil
		b.mu.Unlock()
		if len(ops) == 0 && len(auth) == 0 && len(idx) == 0 && len(req) == 0 {
			return nil
		}
		var redo func() error
		var fixes []func() error
		_, err := s.pipe(ctx, "flush batch", func(p redis.Pipeliner) {
			redo = s.flushAuth(ctx, p, auth)
			for _, l := range req { // indexes before the items they point to
				l.list(ctx, s, p)
			}
			for k, bi := range idx {
				fixes = append(fixes, s.indexSubject(ctx, p, k, bi.ttl, bi.entries))
			}
			for _, op := range ops {
				op(p)
			}
		})
		if err != nil {
			return err
		}
		for _, l := range req {
			if err := l.relist(ctx, s); err != nil {
				return err
			}
		}
		for _, fix := range fixes {
			if err := fix(); err != nil {
				return err
			}
		}
		return redo()
	}
}

func hasNoScript(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			return true
		}
	}
	return false
}

// run runs one script (EVALSHA, falling back to EVAL on NOSCRIPT).
func (s *Store) run(ctx context.Context, op string, sc *redis.Script, keys []string, args ...any) (any, error) {
	v, err := sc.Run(ctx, s.c, keys, args...).Result()
	if err != nil {
		return nil, wrap(op, err)
	}
	return v, nil
}
