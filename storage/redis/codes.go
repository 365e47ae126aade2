package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ory/fosite"
	"github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/storage"
)

// An authorization code, its PKCE record and its OIDC record are one string
// key (kind "ac", keyed by the code signature: fosite keys the PKCE record by
// the code signature, and idp keys the OIDC record by it too). The value is
// the fosite item header ("x|i|t|a|", x the latest expiry of the parts, i the
// code's invalidated flag) followed by parts: a tag ('c' code, 'p' PKCE,
// 'o' OIDC), the length in decimal, ':', the encoded request. One login
// therefore costs one SET (the three creates of one authorize response, in a
// batch), one GET and one SET … GET (the redemption, in a batch), where
// separate keys cost three SETs, four GETs, a script and two DELs.
const (
	partCode = iota
	partPKCE
	partOIDC
)

var partTags = [3]byte{'c', 'p', 'o'}

// authParts are the parts of an authorization-code record; nil is absent.
type authParts [3][]byte

func appendPart(b []byte, part int, data []byte) []byte {
	b = append(b, partTags[part])
	b = strconv.AppendInt(b, int64(len(data)), 10)
	b = append(b, ':')
	return append(b, data...)
}

// newAuthRecord is a new record (code not invalidated) expiring at exp ms.
func newAuthRecord(exp int64, ps authParts) []byte {
	return ps.encode(append(strconv.AppendInt(nil, exp, 10), "|0|0||"...))
}

func (ps authParts) encode(b []byte) []byte {
	for i, d := range ps {
		if d != nil {
			b = appendPart(b, i, d)
		}
	}
	return b
}

var errAuthRecord = errors.New("redis: malformed authorization-code record")

// decodeParts parses the body of an authorization-code record.
func decodeParts(body []byte) (authParts, error) {
	var ps authParts
	for len(body) > 0 {
		part := bytes.IndexByte(partTags[:], body[0])
		colon := bytes.IndexByte(body, ':')
		if part < 0 || colon < 2 {
			return ps, errAuthRecord
		}
		n, err := strconv.Atoi(string(body[1:colon]))
		if err != nil || n < 0 || n > len(body)-colon-1 {
			return ps, errAuthRecord
		}
		ps[part] = nil
		if n > 0 {
			ps[part] = body[colon+1 : colon+1+n]
		}
		body = body[colon+1+n:]
	}
	return ps, nil
}

// authEntry is what one batch knows about one authorization-code record.
type authEntry struct {
	read    bool   // raw is what this batch read (nil: absent)
	raw     []byte // as read, with the invalidation this batch made
	create  authParts
	exp     int64   // latest expiry of the created parts, ms
	drop    [3]bool // parts deleted in this batch
	trimmed bool    // this batch's invalidation already wrote the record without PKCE and OIDC
}

func (b *batch) entry(k string) *authEntry {
	if b.auth == nil {
		b.auth = map[string]*authEntry{}
	}
	e := b.auth[k]
	if e == nil {
		e = &authEntry{}
		b.auth[k] = e
	}
	return e
}

func (s *Store) batchOf(ctx context.Context) *batch {
	b, _ := ctx.Value(batchKey{s}).(*batch)
	return b
}

// putPart stores one part: in a batch, merged with the batch's other parts
// of the same code into one SET at flush; alone, SET NX (the record is new)
// or the authPart script (it is not).
func (s *Store) putPart(ctx context.Context, sig string, part int, r fosite.Requester) error {
	if sig == "" || r == nil {
		return fmt.Errorf("%w: empty authorization-code key or nil request", storage.ErrInvalidArgument)
	}
	encode := s.plain.Encode
	if part != partCode {
		encode = s.plain.EncodeWithoutSession // the code's part has it (FositeStore)
	}
	data, err := encode(r)
	if err != nil {
		return err
	}
	now := s.now()
	exp := storage.ExpiryOf(r, fosite.AuthorizeCode, now, s.fallback)
	if !exp.After(now) {
		return nil // already expired by its own session: it would read as not found
	}
	k := s.key(kindAuth, sig)
	if b := s.batchOf(ctx); b != nil {
		b.mu.Lock()
		e := b.entry(k)
		e.create[part] = data
		e.exp = max(e.exp, ms(exp))
		b.mu.Unlock()
		return nil
	}
	var ps authParts
	ps[part] = data
	return s.writeParts(ctx, k, ms(exp), ps)
}

// writeParts creates the record with ps (SET NX), or, when a record is
// there already, adds them one by one with the authPart script.
func (s *Store) writeParts(ctx context.Context, k string, exp int64, ps authParts) error {
	ttl := time.Duration(s.ttlMS(time.UnixMilli(exp))) * time.Millisecond
	ok, err := s.c.SetNX(ctx, k, newAuthRecord(exp, ps), ttl).Result()
	if err != nil || ok {
		return wrap("put authorization code", err)
	}
	for i, d := range ps {
		if d != nil {
			if _, err := s.run(ctx, "put authorization code", authPart, []string{k}, ms(s.now()), exp, ttl.Milliseconds(), partTags[i:i+1], d); err != nil {
				return err
			}
		}
	}
	return nil
}

// readAuth returns the record of sig: from the batch when this batch read it
// already (fosite reads the code twice and its PKCE and OIDC records once
// each while redeeming it), else with one GET. The item's data is the
// record body; ok is false when the record is absent or expired.
func (s *Store) readAuth(ctx context.Context, sig string) (it item, ps authParts, ok bool, err error) {
	k := s.key(kindAuth, sig)
	b := s.batchOf(ctx)
	var raw []byte
	cached := false
	if b != nil {
		b.mu.Lock()
		if e := b.auth[k]; e != nil && e.read {
			raw, cached = e.raw, true
		}
		b.mu.Unlock()
	}
	if !cached {
		raw, err = s.c.Get(ctx, k).Bytes()
		if errors.Is(err, redis.Nil) {
			raw, err = nil, nil
		}
		if err != nil {
			return it, ps, false, wrap("get authorization code", err)
		}
		if b != nil {
			b.mu.Lock()
			if e := b.entry(k); !e.read {
				e.read, e.raw = true, raw
			}
			b.mu.Unlock()
		}
	}
	if raw == nil {
		return it, ps, false, nil
	}
	if it, err = decodeItem(raw); err == nil {
		ps, err = decodeParts(it.data)
	}
	if err != nil {
		return it, ps, false, err
	}
	return it, ps, it.expires > ms(s.now()), nil
}

func (s *Store) getPart(ctx context.Context, sig string, part int, what string) (fosite.Requester, bool, error) {
	it, ps, ok, err := s.readAuth(ctx, sig)
	if err != nil {
		return nil, false, err
	}
	if !ok || ps[part] == nil {
		return nil, false, fmt.Errorf("%s: %w", what, storage.ErrNotFound)
	}
	r, err := s.plain.Decode(ctx, ps[part])
	return r, it.invalidated, err
}

// deletePart removes a PKCE or OIDC part: in a batch at flush (nothing left
// to do when the batch invalidated the code, which dropped both), alone with
// the authPart script.
func (s *Store) deletePart(ctx context.Context, sig string, part int) error {
	k := s.key(kindAuth, sig)
	if b := s.batchOf(ctx); b != nil {
		b.mu.Lock()
		b.entry(k).drop[part] = true
		b.mu.Unlock()
		return nil
	}
	_, err := s.run(ctx, "delete authorization-code part", authPart, []string{k}, ms(s.now()), "", 0, partTags[part:part+1], "")
	return err
}

// flushAuth adds the batch's authorization-code writes to p: one SET NX
// per new record and the part deletes still due; redo lists the records
// whose SET NX must fall back to writeParts.
func (s *Store) flushAuth(ctx context.Context, p redis.Pipeliner, auth map[string]*authEntry) (redo func() error) {
	type pending struct {
		k   string
		e   *authEntry
		cmd *redis.BoolCmd
	}
	var sets []pending
	for k, e := range auth {
		if e.exp > 0 {
			ttl := time.Duration(s.ttlMS(time.UnixMilli(e.exp))) * time.Millisecond
			sets = append(sets, pending{k, e, p.SetNX(ctx, k, newAuthRecord(e.exp, e.create), ttl)})
		}
		if e.trimmed {
			continue
		}
		for i, d := range e.drop {
			if d {
				p.EvalSha(ctx, authPart.Hash(), []string{k}, ms(s.now()), "", 0, partTags[i:i+1], "")
			}
		}
	}
	return func() error {
		for _, st := range sets {
			if ok, err := st.cmd.Result(); err == nil && !ok {
				if err := s.writeParts(ctx, st.k, st.e.exp, st.e.create); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *Store) CreateAuthorizeCodeSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.putPart(ctx, code, partCode, r)
}

// GetAuthorizeCodeSession returns the request; for an invalidated code the
// request together with fosite.ErrInvalidatedAuthorizeCode.
func (s *Store) GetAuthorizeCodeSession(ctx context.Context, code string, _ fosite.Session) (fosite.Requester, error) {
	r, invalidated, err := s.getPart(ctx, code, partCode, "code")
	if err != nil {
		return nil, err
	}
	if invalidated {
		return r, fmt.Errorf("code: %w", fosite.ErrInvalidatedAuthorizeCode)
	}
	return r, nil
}

// InvalidateAuthorizeCodeSession marks the code used: exactly one of
// concurrent callers gets nil. In a batch that has read the code (the token
// endpoint), one SET … XX GET writes the record marked used and without its
// PKCE and OIDC parts (the redemption deletes both in the same request; the
// batch still answers its own reads of them from what it read) and the old
// value it returns decides the race. Otherwise one script.
func (s *Store) InvalidateAuthorizeCodeSession(ctx context.Context, code string) error {
	k := s.key(kindAuth, code)
	if b := s.batchOf(ctx); b != nil {
		b.mu.Lock()
		e := b.auth[k]
		b.mu.Unlock()
		if e != nil && e.read {
			return s.invalidateRead(ctx, b, k, e)
		}
	}
	v, err := s.run(ctx, "invalidate code", invalidateCode, []string{k}, ms(s.now()))
	if err != nil {
		return err
	}
	switch v.(int64) {
	case 1:
		return nil
	case 2:
		return fmt.Errorf("code: %w", fosite.ErrInvalidatedAuthorizeCode)
	default:
		return fmt.Errorf("code: %w", storage.ErrNotFound)
	}
}

func (s *Store) invalidateRead(ctx context.Context, b *batch, k string, e *authEntry) error {
	b.mu.Lock()
	raw := e.raw
	b.mu.Unlock()
	notFound := fmt.Errorf("code: %w", storage.ErrNotFound)
	if raw == nil {
		return notFound
	}
	it, err := decodeItem(raw)
	if err != nil {
		return err
	}
	ps, err := decodeParts(it.data)
	if err != nil {
		return err
	}
	now := ms(s.now())
	switch {
	case it.expires <= now || ps[partCode] == nil:
		return notFound
	case it.invalidated:
		return fmt.Errorf("code: %w", fosite.ErrInvalidatedAuthorizeCode)
	}
	head := fmt.Appendf(nil, "%d|1|%d||", it.expires, it.rotatedAt)
	rec := appendPart(head[:len(head):len(head)], partCode, ps[partCode])
	old, err := s.c.SetArgs(ctx, k, rec, redis.SetArgs{Mode: "XX", Get: true, KeepTTL: true}).Bytes()
	if errors.Is(err, redis.Nil) {
		return notFound
	}
	if err != nil {
		return wrap("invalidate code", err)
	}
	b.mu.Lock()
	e.raw = append(head, it.data...)
	e.trimmed = true
	b.mu.Unlock()
	prev, err := decodeItem(old)
	switch {
	case err != nil || prev.expires <= now:
		return notFound
	case prev.invalidated:
		return fmt.Errorf("code: %w", fosite.ErrInvalidatedAuthorizeCode)
	}
	return nil
}

// CreatePKCERequestSession implements pkce.PKCERequestStorage.
func (s *Store) CreatePKCERequestSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.putPart(ctx, sig, partPKCE, r)
}

// GetPKCERequestSession implements pkce.PKCERequestStorage.
func (s *Store) GetPKCERequestSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	r, _, err := s.getPart(ctx, sig, partPKCE, "pkce")
	return r, err
}

// DeletePKCERequestSession implements pkce.PKCERequestStorage.
func (s *Store) DeletePKCERequestSession(ctx context.Context, sig string) error {
	return s.deletePart(ctx, sig, partPKCE)
}

// CreateOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *Store) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.putPart(ctx, code, partOIDC, r)
}

// GetOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *Store) GetOpenIDConnectSession(ctx context.Context, code string, _ fosite.Requester) (fosite.Requester, error) {
	r, _, err := s.getPart(ctx, code, partOIDC, "oidc")
	return r, err
}

// DeleteOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *Store) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return s.deletePart(ctx, code, partOIDC)
}
