package memory

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"

	"github.com/essc-project/essc/storage"
)

// Config configures a Store.
type Config struct {
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
	// Logger; nil discards.
	Logger *slog.Logger
}

// Store is the in-memory storage.Sessions.
type Store struct {
	now      func() time.Time
	codec    *storage.RequestCodec
	subjects storage.SubjectsFunc
	grace    time.Duration
	fallback time.Duration
	log      *slog.Logger

	mu       sync.Mutex
	expiries expiries
	items    map[string]*item               // fosite items by kind+hash
	reqIdx   map[string]map[string]struct{} // request id -> token item keys
	subjIdx  map[string]map[string]subjEntry
	qr       map[string]storage.QRTransaction
	watchers map[string]map[*watcher]struct{}
	sso      map[string]storage.SSOSession // by hash of id (ID field cleared)
	ssoSubj  map[string]map[string]struct{}
	expiring map[string]expiring // jti, replay, once, rate counters
}

var _ storage.Sessions = (*Store)(nil)

type item struct {
	data        []byte
	reqID       string
	exp         time.Time
	invalidated bool      // authorize codes
	accessKey   string    // refresh tokens: the access token issued with it
	rotatedAt   time.Time // refresh tokens
}

type expiring struct {
	data  []byte
	count int
	exp   time.Time
}

type watcher struct {
	ch chan *storage.QRTransaction
}

// New validates cfg and returns an empty store.
func New(cfg Config) (*Store, error) {
	if cfg.Lookup == nil || cfg.NewSession == nil {
		return nil, fmt.Errorf("%w: memory.Config needs Lookup and NewSession", storage.ErrInvalidArgument)
	}
	s := &Store{
		now:      cfg.Now,
		codec:    &storage.RequestCodec{Lookup: cfg.Lookup, NewSession: cfg.NewSession, Plain: true},
		subjects: cfg.Subjects,
		grace:    cfg.RefreshGrace,
		fallback: cfg.FallbackTTL,
		log:      cfg.Logger,
		items:    map[string]*item{},
		reqIdx:   map[string]map[string]struct{}{},
		subjIdx:  map[string]map[string]subjEntry{},
		qr:       map[string]storage.QRTransaction{},
		watchers: map[string]map[*watcher]struct{}{},
		sso:      map[string]storage.SSOSession{},
		ssoSubj:  map[string]map[string]struct{}{},
		expiring: map[string]expiring{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.expiries = newExpiries(s.now())
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
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Ping always succeeds unless ctx is done.
func (s *Store) Ping(ctx context.Context) error { return ctxErr(ctx) }

func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return nil
}

const (
	kindCode    = "code"
	kindPKCE    = "pkce"
	kindOIDC    = "oidc"
	kindPAR     = "par"
	kindAccess  = "at"
	kindRefresh = "rt"
	kindJTI     = "jti"
	kindSSO     = "sso"
	kindQR      = "qr"
)

func key(kind, raw string) string { return kind + ":" + storage.HashKey(kind, raw) }

// sweepBudget bounds the expired entries one write drops (see expiries.sweep).
const sweepBudget = 64

// sweepLocked drops entries that expired before now's second; called by
// every write under mu (reads check expiry themselves).
func (s *Store) sweepLocked(now time.Time) {
	s.expiries.sweep(now, sweepBudget, func(r expiryRef) {
		switch r.in {
		case inItems:
			if it, ok := s.items[r.key]; ok && !now.Before(it.exp) {
				s.dropItemLocked(r.key)
			}
		case inExpiring:
			if e, ok := s.expiring[r.key]; ok && !now.Before(e.exp) {
				delete(s.expiring, r.key)
			}
		case inQR:
			if t, ok := s.qr[r.key]; ok && !now.Before(t.ExpiresAt) {
				delete(s.qr, r.key)
			}
		case inSSO:
			if ss, ok := s.sso[r.key]; ok && !now.Before(ss.ExpiresAt) {
				s.dropSSOLocked(r.key)
			}
		case inSubj:
			m := s.subjIdx[r.key]
			if e, ok := m[r.sub]; ok && !now.Before(e.exp) {
				delete(m, r.sub)
				if len(m) == 0 {
					delete(s.subjIdx, r.key)
				}
			}
		}
	})
}

// putExpiringLocked stores e under k and files its expiry.
func (s *Store) putExpiringLocked(k string, e expiring) {
	s.expiring[k] = e
	s.expiries.file(e.exp, expiryRef{in: inExpiring, key: k})
}

func (s *Store) dropItemLocked(k string) {
	it, ok := s.items[k]
	if !ok {
		return
	}
	delete(s.items, k)
	if m := s.reqIdx[it.reqID]; m != nil {
		delete(m, k)
		if len(m) == 0 {
			delete(s.reqIdx, it.reqID)
		}
	}
}

// live returns the unexpired item under k.
func (s *Store) liveLocked(k string) (*item, bool) {
	it, ok := s.items[k]
	if !ok {
		return nil, false
	}
	if !s.now().Before(it.exp) {
		s.dropItemLocked(k)
		return nil, false
	}
	return it, true
}

func (s *Store) put(ctx context.Context, kind, raw string, r fosite.Requester, tt fosite.TokenType, index bool, accessRaw string) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if raw == "" || r == nil {
		return fmt.Errorf("%w: empty %s key or nil request", storage.ErrInvalidArgument, kind)
	}
	encode := s.codec.Encode
	if kind == kindPKCE || kind == kindOIDC {
		encode = s.codec.EncodeWithoutSession // the code's record has it (FositeStore)
	}
	data, err := encode(r)
	if err != nil {
		return err
	}
	now := s.now()
	exp := storage.ExpiryOf(r, tt, now, s.fallback)
	if kind == kindPAR {
		exp = storage.PARExpiry(r, now, s.fallback)
	}
	// Strings kept past this call are copied: a request decoded from a
	// stored record (the code's, at the token endpoint) holds strings that
	// share the decoder's buffer of the whole record, which an index key
	// would otherwise keep alive for the token's lifetime.
	it := &item{data: data, reqID: strings.Clone(r.GetID()), exp: exp}
	if accessRaw != "" {
		it.accessKey = key(kindAccess, accessRaw)
	}
	k := key(kind, raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	s.dropItemLocked(k)
	s.items[k] = it
	s.expiries.file(exp, expiryRef{in: inItems, key: k})
	if index {
		m := s.reqIdx[it.reqID]
		if m == nil {
			m = map[string]struct{}{}
			s.reqIdx[it.reqID] = m
		}
		m[k] = struct{}{}
		for _, subj := range s.subjects(r) {
			subj.Key, subj.Tag = strings.Clone(subj.Key), strings.Clone(subj.Tag)
			sm := s.subjIdx[subj.Key]
			if sm == nil {
				sm = map[string]subjEntry{}
				s.subjIdx[subj.Key] = sm
			}
			if e := sm[it.reqID]; exp.After(e.exp) {
				sm[it.reqID] = subjEntry{exp, subj.Tag}
				s.expiries.file(exp, expiryRef{in: inSubj, key: subj.Key, sub: it.reqID})
			}
		}
	}
	return nil
}

// get returns the stored bytes under kind/raw (copy) and the item flags.
func (s *Store) get(ctx context.Context, kind, raw string) (item, error) {
	if err := ctxErr(ctx); err != nil {
		return item{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.liveLocked(key(kind, raw))
	if !ok {
		return item{}, fmt.Errorf("%s: %w", kind, storage.ErrNotFound)
	}
	return *it, nil
}

func (s *Store) decode(ctx context.Context, it item) (fosite.Requester, error) {
	return s.codec.Decode(ctx, it.data)
}

func (s *Store) del(ctx context.Context, kind, raw string) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropItemLocked(key(kind, raw))
	return nil
}

func (s *Store) getRequest(ctx context.Context, kind, raw string) (fosite.Requester, error) {
	it, err := s.get(ctx, kind, raw)
	if err != nil {
		return nil, err
	}
	return s.decode(ctx, it)
}

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *Store) CreateAuthorizeCodeSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.put(ctx, kindCode, code, r, fosite.AuthorizeCode, false, "")
}

// GetAuthorizeCodeSession returns the request; for an invalidated code the
// request together with fosite.ErrInvalidatedAuthorizeCode.
func (s *Store) GetAuthorizeCodeSession(ctx context.Context, code string, _ fosite.Session) (fosite.Requester, error) {
	it, err := s.get(ctx, kindCode, code)
	if err != nil {
		return nil, err
	}
	r, err := s.decode(ctx, it)
	if err != nil {
		return nil, err
	}
	if it.invalidated {
		return r, fmt.Errorf("code: %w", fosite.ErrInvalidatedAuthorizeCode)
	}
	return r, nil
}

// InvalidateAuthorizeCodeSession marks the code used; exactly one caller wins.
func (s *Store) InvalidateAuthorizeCodeSession(ctx context.Context, code string) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.liveLocked(key(kindCode, code))
	if !ok {
		return fmt.Errorf("code: %w", storage.ErrNotFound)
	}
	if it.invalidated {
		return fmt.Errorf("code: %w", fosite.ErrInvalidatedAuthorizeCode)
	}
	it.invalidated = true
	return nil
}

// CreatePKCERequestSession implements pkce.PKCERequestStorage.
func (s *Store) CreatePKCERequestSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.put(ctx, kindPKCE, sig, r, fosite.AuthorizeCode, false, "")
}

// GetPKCERequestSession implements pkce.PKCERequestStorage.
func (s *Store) GetPKCERequestSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	return s.getRequest(ctx, kindPKCE, sig)
}

// DeletePKCERequestSession implements pkce.PKCERequestStorage.
func (s *Store) DeletePKCERequestSession(ctx context.Context, sig string) error {
	return s.del(ctx, kindPKCE, sig)
}

// CreateOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *Store) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.put(ctx, kindOIDC, code, r, fosite.AuthorizeCode, false, "")
}

// GetOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *Store) GetOpenIDConnectSession(ctx context.Context, code string, _ fosite.Requester) (fosite.Requester, error) {
	return s.getRequest(ctx, kindOIDC, code)
}

// DeleteOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *Store) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return s.del(ctx, kindOIDC, code)
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
	r, err := s.decode(ctx, it)
	if err != nil {
		return nil, err
	}
	if !it.rotatedAt.IsZero() && s.now().Sub(it.rotatedAt) >= s.grace {
		return r, fmt.Errorf("refresh token rotated: %w", fosite.ErrInactiveToken)
	}
	return r, nil
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *Store) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	return s.del(ctx, kindRefresh, sig)
}

// RotateRefreshToken marks sig rotated and deletes its access token.
func (s *Store) RotateRefreshToken(ctx context.Context, _ string, sig string) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	it, ok := s.liveLocked(key(kindRefresh, sig))
	if !ok {
		return fmt.Errorf("refresh token: %w", storage.ErrNotFound)
	}
	if !it.rotatedAt.IsZero() {
		if now.Sub(it.rotatedAt) >= s.grace {
			return fmt.Errorf("refresh token rotated: %w", fosite.ErrInactiveToken)
		}
		return nil // retry within the grace window
	}
	it.rotatedAt = now
	if it.accessKey != "" {
		s.dropItemLocked(it.accessKey)
	}
	return nil
}

// RevokeRefreshToken deletes every refresh and access token of requestID.
func (s *Store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	return s.revoke(ctx, requestID, true)
}

// RevokeAccessToken deletes every access token of requestID.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	return s.revoke(ctx, requestID, false)
}

// RevokeRequest deletes every token of requestID.
func (s *Store) RevokeRequest(ctx context.Context, requestID string) error {
	return s.revoke(ctx, requestID, true)
}

func (s *Store) revoke(ctx context.Context, requestID string, refresh bool) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokeLocked(requestID, refresh)
	return nil
}

func (s *Store) revokeLocked(requestID string, refresh bool) {
	for k := range s.reqIdx[requestID] {
		if refresh || k[:len(kindAccess)+1] == kindAccess+":" {
			s.dropItemLocked(k)
		}
	}
}

// subjEntry is a request's entry in a subject index.
type subjEntry struct {
	exp time.Time // of the longest-lived token indexed
	tag string
}

// RevokeSubject deletes the tokens of every request indexed under subject
// (with tag, when it is not empty).
func (s *Store) RevokeSubject(ctx context.Context, subject, tag string) (int, error) {
	if err := ctxErr(ctx); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.subjIdx[subject]
	n := 0
	for rid, e := range m {
		if tag != "" && e.tag != tag {
			continue
		}
		if len(s.reqIdx[rid]) > 0 {
			n++
		}
		s.revokeLocked(rid, true)
		delete(m, rid)
	}
	if len(m) == 0 {
		delete(s.subjIdx, subject)
	}
	return n, nil
}

// ClientAssertionJWTValid returns fosite.ErrJTIKnown for a live jti.
func (s *Store) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.liveExpiringLocked(key(kindJTI, jti)); ok {
		return fosite.ErrJTIKnown
	}
	return nil
}

// SetClientAssertionJWT records jti until exp; fosite.ErrJTIKnown if live.
func (s *Store) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if jti == "" {
		return fmt.Errorf("%w: empty jti", storage.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)
	k := key(kindJTI, jti)
	if _, ok := s.liveExpiringLocked(k); ok {
		return fosite.ErrJTIKnown
	}
	if !exp.After(now) {
		return nil // already expired: nothing to remember, the assertion is rejected by its exp
	}
	s.putExpiringLocked(k, expiring{exp: exp})
	return nil
}

func (s *Store) liveExpiringLocked(k string) (expiring, bool) {
	e, ok := s.expiring[k]
	if !ok {
		return expiring{}, false
	}
	if !s.now().Before(e.exp) {
		delete(s.expiring, k)
		return expiring{}, false
	}
	return e, true
}

// Seen implements storage.ReplayCache.
func (s *Store) Seen(ctx context.Context, namespace, k string, ttl time.Duration) (bool, error) {
	if err := ctxErr(ctx); err != nil {
		return false, err
	}
	if ttl <= 0 || k == "" {
		return false, fmt.Errorf("%w: replay key and ttl required", storage.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)
	full := "seen:" + namespace + ":" + storage.HashKey("seen:"+namespace, k)
	if _, ok := s.liveExpiringLocked(full); ok {
		return false, nil
	}
	s.putExpiringLocked(full, expiring{exp: now.Add(ttl)})
	return true, nil
}

// Allow implements storage.RateLimiter with clock-aligned fixed windows.
func (s *Store) Allow(ctx context.Context, k string, limit int, window time.Duration) (storage.RateDecision, error) {
	if err := ctxErr(ctx); err != nil {
		return storage.RateDecision{}, err
	}
	if limit <= 0 || window <= 0 || k == "" {
		return storage.RateDecision{}, fmt.Errorf("%w: rate key, limit and window required", storage.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)
	start, end := storage.Window(now, window)
	full := fmt.Sprintf("rate:%s:%d", k, start.UnixMilli())
	e, _ := s.liveExpiringLocked(full)
	e.count++
	if e.count == 1 { // the window's key: its end never moves
		e.exp = end
		s.putExpiringLocked(full, e)
	} else {
		s.expiring[full] = e
	}
	return storage.Decide(e.count, limit, now, end), nil
}

// PutOnce implements storage.OnceStore.
func (s *Store) PutOnce(ctx context.Context, namespace, k string, value []byte, ttl time.Duration) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if ttl <= 0 || k == "" {
		return fmt.Errorf("%w: once key and ttl required", storage.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)
	full := "once:" + namespace + ":" + storage.HashKey("once:"+namespace, k)
	if _, ok := s.liveExpiringLocked(full); ok {
		return fmt.Errorf("once %s: %w", namespace, storage.ErrDuplicate)
	}
	s.putExpiringLocked(full, expiring{data: bytes.Clone(value), exp: now.Add(ttl)})
	return nil
}

// TakeOnce implements storage.OnceStore.
func (s *Store) TakeOnce(ctx context.Context, namespace, k string) ([]byte, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	full := "once:" + namespace + ":" + storage.HashKey("once:"+namespace, k)
	e, ok := s.liveExpiringLocked(full)
	if !ok {
		return nil, fmt.Errorf("once %s: %w", namespace, storage.ErrNotFound)
	}
	delete(s.expiring, full)
	if e.data == nil {
		return []byte{}, nil
	}
	return e.data, nil
}
