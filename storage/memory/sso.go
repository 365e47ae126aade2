package memory

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/essc-project/essc/storage"
)

// CreateSSO implements storage.SSOStore.
func (s *Store) CreateSSO(ctx context.Context, ss storage.SSOSession) (storage.SSOSession, error) {
	if err := ctxErr(ctx); err != nil {
		return storage.SSOSession{}, err
	}
	now := s.now()
	if ss.ID == "" || !ss.ExpiresAt.After(now) {
		return storage.SSOSession{}, fmt.Errorf("%w: sso session needs id and a future expiry", storage.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	h := storage.HashKey(kindSSO, ss.ID)
	if _, ok := s.liveSSOLocked(h); ok {
		return storage.SSOSession{}, fmt.Errorf("sso: %w", storage.ErrDuplicate)
	}
	ss.CreatedAt = now.Truncate(time.Millisecond) // same precision as Redis
	ss.ExpiresAt = ss.ExpiresAt.Truncate(time.Millisecond)
	s.putSSOLocked(h, ss)
	return ss, nil
}

func (s *Store) putSSOLocked(h string, ss storage.SSOSession) {
	stored := ss
	stored.ID = "" // never keep the raw cookie secret
	stored.Data = bytes.Clone(ss.Data)
	s.sso[h] = stored
	s.expiries.file(ss.ExpiresAt, expiryRef{in: inSSO, key: h})
	if ss.Subject != "" {
		m := s.ssoSubj[ss.Subject]
		if m == nil {
			m = map[string]struct{}{}
			s.ssoSubj[ss.Subject] = m
		}
		m[h] = struct{}{}
	}
}

func (s *Store) liveSSOLocked(h string) (storage.SSOSession, bool) {
	ss, ok := s.sso[h]
	if !ok {
		return ss, false
	}
	if !s.now().Before(ss.ExpiresAt) {
		s.dropSSOLocked(h)
		return ss, false
	}
	return ss, true
}

func (s *Store) dropSSOLocked(h string) {
	ss, ok := s.sso[h]
	if !ok {
		return
	}
	delete(s.sso, h)
	if m := s.ssoSubj[ss.Subject]; m != nil {
		delete(m, h)
		if len(m) == 0 {
			delete(s.ssoSubj, ss.Subject)
		}
	}
}

// GetSSO implements storage.SSOStore.
func (s *Store) GetSSO(ctx context.Context, id string) (storage.SSOSession, error) {
	if err := ctxErr(ctx); err != nil {
		return storage.SSOSession{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.liveSSOLocked(storage.HashKey(kindSSO, id))
	if !ok {
		return storage.SSOSession{}, fmt.Errorf("sso: %w", storage.ErrNotFound)
	}
	ss.ID = id
	ss.Data = bytes.Clone(ss.Data)
	return ss, nil
}

// RotateSSO implements storage.SSOStore.
func (s *Store) RotateSSO(ctx context.Context, oldID, newID string) (storage.SSOSession, error) {
	if err := ctxErr(ctx); err != nil {
		return storage.SSOSession{}, err
	}
	if newID == "" || newID == oldID {
		return storage.SSOSession{}, fmt.Errorf("%w: rotation needs a new id", storage.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	oh, nh := storage.HashKey(kindSSO, oldID), storage.HashKey(kindSSO, newID)
	ss, ok := s.liveSSOLocked(oh)
	if !ok {
		return storage.SSOSession{}, fmt.Errorf("sso: %w", storage.ErrNotFound)
	}
	if _, taken := s.liveSSOLocked(nh); taken {
		return storage.SSOSession{}, fmt.Errorf("sso new id: %w", storage.ErrDuplicate)
	}
	s.dropSSOLocked(oh)
	s.putSSOLocked(nh, ss)
	ss.ID = newID
	ss.Data = bytes.Clone(ss.Data)
	return ss, nil
}

// DeleteSSO implements storage.SSOStore.
func (s *Store) DeleteSSO(ctx context.Context, id string) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropSSOLocked(storage.HashKey(kindSSO, id))
	return nil
}

// DeleteSSOSubject implements storage.SSOStore.
func (s *Store) DeleteSSOSubject(ctx context.Context, subject string) (int, error) {
	if err := ctxErr(ctx); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for h := range s.ssoSubj[subject] {
		if _, ok := s.liveSSOLocked(h); ok {
			n++
		}
		s.dropSSOLocked(h)
	}
	delete(s.ssoSubj, subject)
	return n, nil
}
