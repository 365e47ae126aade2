package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/storage"
)

const (
	kindSSO     = "sso"
	kindSSOSubj = "ssosub"
)

func ssoFrom(id string, m map[string]string, data []byte) storage.SSOSession {
	return storage.SSOSession{
		ID:        id,
		Subject:   m["sub"],
		CreatedAt: time.UnixMilli(atoi(m["ca"])),
		ExpiresAt: time.UnixMilli(atoi(m["x"])),
		Data:      data,
	}
}

// CreateSSO implements storage.SSOStore (one pipelined round trip).
func (s *Store) CreateSSO(ctx context.Context, ss storage.SSOSession) (storage.SSOSession, error) {
	now := s.now()
	if ss.ID == "" || !ss.ExpiresAt.After(now) {
		return storage.SSOSession{}, fmt.Errorf("%w: sso session needs id and a future expiry", storage.ErrInvalidArgument)
	}
	ss.CreatedAt = now.Truncate(time.Millisecond)
	ss.ExpiresAt = ss.ExpiresAt.Truncate(time.Millisecond)
	created, err := s.putSSO(ctx, ss)
	if err != nil {
		return storage.SSOSession{}, err
	}
	if !created {
		return storage.SSOSession{}, fmt.Errorf("sso: %w", storage.ErrDuplicate)
	}
	return ss, nil
}

func (s *Store) putSSO(ctx context.Context, ss storage.SSOSession) (bool, error) {
	ttl := s.ttlMS(ss.ExpiresAt)
	h := storage.HashKey(kindSSO, ss.ID)
	var put *redis.Cmd
	_, err := s.pipe(ctx, "create sso", func(p redis.Pipeliner) {
		if ss.Subject != "" {
			s.index(ctx, p, s.key(kindSSOSubj, ss.Subject), ttl, indexMember{member: h})
		}
		put = putFields.EvalSha(ctx, p, rec(s.p+kindSSO+":{"+h+"}"), ms(s.now()), ttl, ss.Data,
			"sub", ss.Subject, "ca", ms(ss.CreatedAt), "x", ms(ss.ExpiresAt))
	})
	if err != nil {
		return false, err
	}
	n, _ := put.Int64()
	return n == 1, nil
}

// GetSSO implements storage.SSOStore.
func (s *Store) GetSSO(ctx context.Context, id string) (storage.SSOSession, error) {
	m, d, err := s.getRec(ctx, "get sso", s.key(kindSSO, id))
	if err != nil {
		return storage.SSOSession{}, err
	}
	if x, ok := m["x"]; !ok || atoi(x) <= ms(s.now()) {
		return storage.SSOSession{}, fmt.Errorf("sso: %w", storage.ErrNotFound)
	}
	return ssoFrom(id, m, d), nil
}

// RotateSSO implements storage.SSOStore: the old key is taken atomically
// (one winner), then the session is written under newID. If newID is
// already taken (random ids make this practically impossible) the session
// is gone and ErrDuplicate is returned: the caller starts a new login.
func (s *Store) RotateSSO(ctx context.Context, oldID, newID string) (storage.SSOSession, error) {
	if newID == "" || newID == oldID {
		return storage.SSOSession{}, fmt.Errorf("%w: rotation needs a new id", storage.ErrInvalidArgument)
	}
	m, d, err := s.take(ctx, "rotate sso", s.key(kindSSO, oldID))
	if err != nil {
		return storage.SSOSession{}, err
	}
	if m == nil {
		return storage.SSOSession{}, fmt.Errorf("sso: %w", storage.ErrNotFound)
	}
	ss := ssoFrom(newID, m, d)
	created, err := s.putSSO(ctx, ss)
	if err != nil {
		return storage.SSOSession{}, err
	}
	if !created {
		return storage.SSOSession{}, fmt.Errorf("sso new id: %w", storage.ErrDuplicate)
	}
	if ss.Subject != "" {
		// The old hash stays in the subject index until it expires; deleting
		// a missing key later is harmless.
		if err := s.c.HDel(ctx, s.key(kindSSOSubj, ss.Subject), storage.HashKey(kindSSO, oldID)).Err(); err != nil {
			s.log.Debug("sso rotate: index cleanup failed", "err", err)
		}
	}
	return ss, nil
}

// DeleteSSO implements storage.SSOStore.
func (s *Store) DeleteSSO(ctx context.Context, id string) error {
	return wrap("delete sso", s.c.Del(ctx, rec(s.key(kindSSO, id))...).Err())
}

// DeleteSSOSubject implements storage.SSOStore.
func (s *Store) DeleteSSOSubject(ctx context.Context, subject string) (int, error) {
	idx := s.key(kindSSOSubj, subject)
	hs, err := s.c.HKeys(ctx, idx).Result()
	if err != nil {
		return 0, wrap("delete sso subject", err)
	}
	var dels []*redis.IntCmd
	_, err = s.pipe(ctx, "delete sso subject", func(p redis.Pipeliner) {
		for _, h := range hs {
			dels = append(dels, p.Del(ctx, s.p+kindSSO+":{"+h+"}"))
			p.Del(ctx, s.p+kindSSO+":{"+h+"}:d")
		}
		p.Del(ctx, idx)
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	return n, nil
}
