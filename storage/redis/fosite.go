package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/storage"
)

const (
	kindAuth    = "ac" // an authorization code with its PKCE and OIDC records (codes.go)
	kindPAR     = "par"
	kindAccess  = "at"
	kindRefresh = "rt"
	kindJTI     = "jti"
	kindReqList = "rq"  // a grant's token keys, "at:…,rt:…" (string)
	kindReq     = "req" // the same as a hash, written until 2026-11-29: read by revocations only
	kindSubject = "sub"
)

func (s *Store) reqKey(requestID string) string { return s.key(kindReqList, requestID) }

// memberKey turns a request-index member "kind:hash" into the record key.
func (s *Store) memberKey(m string) string {
	kind, h, _ := strings.Cut(m, ":")
	return s.p + kind + ":{" + h + "}"
}

// put stores r under kind/raw in one round trip: the item, and for tokens
// the request-id index and the subject indexes (plain commands on one key
// each, so each is single-slot; they are pipelined together). In a batch
// they wait for the flush.
func (s *Store) put(ctx context.Context, kind, raw string, r fosite.Requester, tt fosite.TokenType, index bool, accessRaw string) error {
	if raw == "" || r == nil {
		return fmt.Errorf("%w: empty %s key or nil request", storage.ErrInvalidArgument, kind)
	}
	// Short-lived records skip compression: it cost about as much CPU as an
	// SM2 signature per record and saves Redis memory only for a minute.
	codec := s.plain
	if tt == fosite.AccessToken || tt == fosite.RefreshToken {
		codec = s.codec
	}
	data, err := codec.Encode(r)
	if err != nil {
		return err
	}
	now := s.now()
	exp := storage.ExpiryOf(r, tt, now, s.fallback)
	if !exp.After(now) {
		return nil // already expired by its own session: it would read as not found
	}
	ttl := s.ttlMS(exp)
	k := s.key(kind, raw)
	access := ""
	if accessRaw != "" {
		access = storage.HashKey(kindAccess, accessRaw)
	}
	var entries []indexEntry
	var req *reqList
	if index {
		req = &reqList{key: s.reqKey(r.GetID()), members: []string{kind + ":" + storage.HashKey(kind, raw)}, ttl: ttl, fresh: storage.IsNewGrant(ctx)}
		for _, subj := range s.subjects(r) {
			entries = append(entries, indexEntry{s.key(kindSubject, subj.Key), indexMember{r.GetID(), subj.Tag}})
		}
	}
	set := func(p redis.Pipeliner) {
		p.Set(ctx, k, encodeItem(exp, access, data), time.Duration(ttl)*time.Millisecond)
	}
	if b := s.batchOf(ctx); b != nil {
		// The batch writes each index key once (a code exchange puts an
		// access and a refresh token of one request and one holder), before
		// the items.
		b.mu.Lock()
		if req != nil {
			b.addReq(req)
		}
		for _, e := range entries {
			b.addIndex(e, ttl)
		}
		b.ops = append(b.ops, set)
		b.mu.Unlock()
		return nil
	}
	var fixes []func() error
	_, err = s.pipe(ctx, "put "+kind, func(p redis.Pipeliner) {
		// Indexes first: a crash between them and the item leaves an index
		// entry pointing at nothing, never a token that revocation cannot
		// find (except after a wrong storage.NewGrant mark or a subject
		// window another replica created, see relist and indexSubject).
		if req != nil {
			req.list(ctx, s, p)
		}
		for _, e := range entries {
			fixes = append(fixes, s.indexSubject(ctx, p, e.key, ttl, []indexMember{e.indexMember}))
		}
		set(p)
	})
	if err == nil && req != nil {
		err = req.relist(ctx, s)
	}
	for _, fix := range fixes {
		if err == nil {
			err = fix()
		}
	}
	return err
}

// reqList adds members to a grant's request index, a string listing its
// token keys. The first tokens of a grant (storage.NewGrant) create it with
// one SET NX PX; later ones (a refresh) APPEND and reset the TTL to the
// index horizon (two commands). Members are never removed one by one: a
// revoked access token's entry stays until the index expires or the grant
// is revoked (deleting a missing key is harmless).
type reqList struct {
	key     string
	members []string
	ttl     int64 // ms, the longest of the entries'
	fresh   bool  // every put of the list was marked storage.NewGrant
	created *redis.StatusCmd
}

func (l *reqList) list(ctx context.Context, s *Store, p redis.Pipeliner) {
	h := time.Duration(s.horizon(l.ttl)) * time.Millisecond
	v := strings.Join(l.members, ",")
	if l.fresh {
		l.created = p.SetArgs(ctx, l.key, v, redis.SetArgs{Mode: "NX", TTL: h})
		return
	}
	p.Append(ctx, l.key, ","+v)
	p.PExpire(ctx, l.key, h)
}

// relist appends, in a second round trip, when list's SET NX found an index
// (a put marked storage.NewGrant was not the grant's first): the tokens are
// stored by then, so a crash in between leaves them out of the index.
func (l *reqList) relist(ctx context.Context, s *Store) error {
	if l.created == nil || !errors.Is(l.created.Err(), redis.Nil) {
		return nil
	}
	s.log.WarnContext(ctx, "redis: request index existed for a new grant; appending", "key", l.key)
	l.fresh, l.created = false, nil
	_, err := s.pipe(ctx, "append request index", func(p redis.Pipeliner) { l.list(ctx, s, p) })
	return err
}

// indexEntry is an entry of the revocation index key.
type indexEntry struct {
	key string
	indexMember
}

// indexMember is a request id (subject index) or item key (request index)
// and its tag (subject index, may be empty).
type indexMember struct{ member, tag string }

// item is a stored fosite item.
type item struct {
	expires     int64 // ms
	invalidated bool
	rotatedAt   int64 // ms, 0 if never
	data        []byte
}

// encodeItem renders "x|0|0|a|" + the encoded request (scripts.go).
func encodeItem(exp time.Time, access string, data []byte) []byte {
	b := make([]byte, 0, 24+len(access)+len(data))
	b = strconv.AppendInt(b, ms(exp), 10)
	b = append(b, "|0|0|"...)
	b = append(b, access...)
	b = append(b, '|')
	return append(b, data...)
}

var errItemRecord = errors.New("redis: malformed token record")

func decodeItem(v []byte) (item, error) {
	var f [4][]byte
	for i := range f {
		j := bytes.IndexByte(v, '|')
		if j < 0 {
			return item{}, errItemRecord
		}
		f[i], v = v[:j], v[j+1:]
	}
	x, err1 := strconv.ParseInt(string(f[0]), 10, 64)
	t, err2 := strconv.ParseInt(string(f[2]), 10, 64)
	if err1 != nil || err2 != nil || (string(f[1]) != "0" && string(f[1]) != "1") {
		return item{}, errItemRecord
	}
	return item{expires: x, invalidated: f[1][0] == '1', rotatedAt: t, data: v}, nil
}

func (s *Store) get(ctx context.Context, kind, raw string) (item, error) {
	v, err := s.c.Get(ctx, s.key(kind, raw)).Bytes()
	if errors.Is(err, redis.Nil) {
		return item{}, fmt.Errorf("%s: %w", kind, storage.ErrNotFound)
	}
	if err != nil {
		return item{}, wrap("get "+kind, err)
	}
	it, err := decodeItem(v)
	if err != nil {
		return item{}, fmt.Errorf("%s: %w", kind, err)
	}
	if it.expires <= ms(s.now()) {
		return item{}, fmt.Errorf("%s: %w", kind, storage.ErrNotFound)
	}
	return it, nil
}

func (s *Store) getRequest(ctx context.Context, kind, raw string) (fosite.Requester, error) {
	it, err := s.get(ctx, kind, raw)
	if err != nil {
		return nil, err
	}
	return s.codec.Decode(ctx, it.data)
}

func (s *Store) del(ctx context.Context, kind, raw string) error {
	return wrap("del "+kind, s.c.Del(ctx, s.key(kind, raw)).Err())
}

// CreatePARSession implements fosite.PARStorage.
func (s *Store) CreatePARSession(ctx context.Context, uri string, r fosite.AuthorizeRequester) error {
	return s.put(ctx, kindPAR, uri, r, fosite.PushedAuthorizeRequestContext, false, "")
}

// GetPARSession implements fosite.PARStorage.
func (s *Store) GetPARSession(ctx context.Context, uri string) (fosite.AuthorizeRequester, error) {
	r, err := s.getRequest(ctx, kindPAR, uri)
	if err != nil {
		return nil, err
	}
	ar, ok := r.(fosite.AuthorizeRequester)
	if !ok {
		return nil, fmt.Errorf("par: stored request is not an authorize request: %w", storage.ErrNotFound)
	}
	return ar, nil
}

// DeletePARSession implements fosite.PARStorage.
func (s *Store) DeletePARSession(ctx context.Context, uri string) error {
	return s.del(ctx, kindPAR, uri)
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Store) CreateAccessTokenSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.put(ctx, kindAccess, sig, r, fosite.AccessToken, true, "")
}

// GetAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Store) GetAccessTokenSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	return s.getRequest(ctx, kindAccess, sig)
}

// DeleteAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Store) DeleteAccessTokenSession(ctx context.Context, sig string) error {
	return s.del(ctx, kindAccess, sig)
}

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *Store) CreateRefreshTokenSession(ctx context.Context, sig, accessSig string, r fosite.Requester) error {
	return s.put(ctx, kindRefresh, sig, r, fosite.RefreshToken, true, accessSig)
}

// GetRefreshTokenSession returns the request; a token rotated longer ago
// than the grace window returns the request with fosite.ErrInactiveToken.
func (s *Store) GetRefreshTokenSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	it, err := s.get(ctx, kindRefresh, sig)
	if err != nil {
		return nil, err
	}
	r, err := s.codec.Decode(ctx, it.data)
	if err != nil {
		return nil, err
	}
	if it.rotatedAt != 0 && ms(s.now())-it.rotatedAt >= s.grace.Milliseconds() {
		return r, fmt.Errorf("refresh token rotated: %w", fosite.ErrInactiveToken)
	}
	return r, nil
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *Store) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	return s.del(ctx, kindRefresh, sig)
}

// RotateRefreshToken marks sig rotated (atomic) and deletes the access token
// issued with it.
func (s *Store) RotateRefreshToken(ctx context.Context, _ string, sig string) error {
	v, err := s.run(ctx, "rotate refresh", rotateRefresh, []string{s.key(kindRefresh, sig)}, ms(s.now()), s.grace.Milliseconds())
	if err != nil {
		return err
	}
	res, _ := v.([]any)
	if len(res) != 2 {
		return fmt.Errorf("redis rotate refresh: unexpected reply %v", v)
	}
	switch res[0].(int64) {
	case 1:
		if a, _ := res[1].(string); a != "" {
			return wrap("rotate refresh: delete access", s.c.Del(ctx, s.p+kindAccess+":{"+a+"}").Err())
		}
		return nil
	case 2:
		return nil
	case 3:
		return fmt.Errorf("refresh token rotated: %w", fosite.ErrInactiveToken)
	default:
		return fmt.Errorf("refresh token: %w", storage.ErrNotFound)
	}
}

// RevokeRefreshToken deletes every refresh and access token of requestID.
func (s *Store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	_, err := s.revoke(ctx, []string{requestID}, true)
	return err
}

// RevokeAccessToken deletes every access token of requestID.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	_, err := s.revoke(ctx, []string{requestID}, false)
	return err
}

// RevokeRequest deletes every token of requestID.
func (s *Store) RevokeRequest(ctx context.Context, requestID string) error {
	_, err := s.revoke(ctx, []string{requestID}, true)
	return err
}

// revoke deletes the tokens of the request ids (all, or access only) in two
// round trips (read the indexes, delete) and returns how many request ids
// still had a token.
func (s *Store) revoke(ctx context.Context, requestIDs []string, refresh bool) (int, error) {
	if len(requestIDs) == 0 {
		return 0, nil
	}
	lists := make([]*redis.StringCmd, len(requestIDs))
	legacy := make([]*redis.StringSliceCmd, len(requestIDs))
	_, err := s.pipe(ctx, "revoke: read index", func(p redis.Pipeliner) {
		for i, rid := range requestIDs {
			lists[i] = p.Get(ctx, s.reqKey(rid))
			legacy[i] = p.HKeys(ctx, s.key(kindReq, rid))
		}
	})
	if err != nil {
		return 0, err
	}
	accessMark := kindAccess + ":"
	type del struct {
		rid int
		cmd *redis.IntCmd
	}
	var dels []del
	_, err = s.pipe(ctx, "revoke: delete", func(p redis.Pipeliner) {
		for i := range requestIDs {
			members := legacy[i].Val()
			if v := lists[i].Val(); v != "" {
				members = append(members, strings.Split(v, ",")...)
			}
			for _, k := range members {
				if k != "" && (refresh || strings.HasPrefix(k, accessMark)) {
					dels = append(dels, del{i, p.Del(ctx, s.memberKey(k))})
				}
			}
			if refresh { // two keys, two slots
				p.Del(ctx, s.reqKey(requestIDs[i]))
				p.Del(ctx, s.key(kindReq, requestIDs[i]))
			}
		}
	})
	if err != nil {
		return 0, err
	}
	hit := map[int]bool{}
	for _, d := range dels {
		if d.cmd.Val() > 0 {
			hit[d.rid] = true
		}
	}
	return len(hit), nil
}

// ClientAssertionJWTValid returns fosite.ErrJTIKnown for a live jti.
func (s *Store) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	v, err := s.c.Get(ctx, s.key(kindJTI, jti)).Result()
	if err != nil {
		if err == redis.Nil {
			return nil
		}
		return wrap("jti", err)
	}
	if atoi(v) > ms(s.now()) {
		return fosite.ErrJTIKnown
	}
	return nil
}

// SetClientAssertionJWT records jti until exp (atomic set-if-absent);
// fosite.ErrJTIKnown if live.
func (s *Store) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	if jti == "" {
		return fmt.Errorf("%w: empty jti", storage.ErrInvalidArgument)
	}
	now := s.now()
	if !exp.After(now) {
		if err := s.ClientAssertionJWTValid(ctx, jti); err != nil {
			return err
		}
		return nil
	}
	first, err := s.setIfAbsent(ctx, "jti", s.key(kindJTI, jti), now, exp)
	if err != nil {
		return err
	}
	if !first {
		return fosite.ErrJTIKnown
	}
	return nil
}
