package memory

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/essc-project/essc/storage"
)

func cloneQR(t storage.QRTransaction) storage.QRTransaction {
	t.BindingHash = bytes.Clone(t.BindingHash)
	t.Data = bytes.Clone(t.Data)
	return t
}

// CreateQR implements storage.QRStore.
func (s *Store) CreateQR(ctx context.Context, t storage.QRTransaction) (storage.QRTransaction, error) {
	if err := ctxErr(ctx); err != nil {
		return storage.QRTransaction{}, err
	}
	now := s.now()
	if t.ID == "" || t.State == "" || !t.ExpiresAt.After(now) {
		return storage.QRTransaction{}, fmt.Errorf("%w: qr transaction needs id, state and a future expiry", storage.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	k := key(kindQR, t.ID)
	if old, ok := s.qr[k]; ok && now.Before(old.ExpiresAt) {
		return storage.QRTransaction{}, fmt.Errorf("qr: %w", storage.ErrDuplicate)
	}
	t = cloneQR(t)
	t.Version = 1
	t.CreatedAt = now.Truncate(time.Millisecond) // same precision as Redis
	t.ExpiresAt = t.ExpiresAt.Truncate(time.Millisecond)
	s.qr[k] = t
	s.expiries.file(t.ExpiresAt, expiryRef{in: inQR, key: k})
	return cloneQR(t), nil
}

func (s *Store) liveQRLocked(id string) (storage.QRTransaction, bool) {
	k := key(kindQR, id)
	t, ok := s.qr[k]
	if !ok {
		return t, false
	}
	if !s.now().Before(t.ExpiresAt) {
		delete(s.qr, k)
		return t, false
	}
	return t, true
}

// GetQR implements storage.QRStore.
func (s *Store) GetQR(ctx context.Context, id string) (storage.QRTransaction, error) {
	if err := ctxErr(ctx); err != nil {
		return storage.QRTransaction{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.liveQRLocked(id)
	if !ok {
		return storage.QRTransaction{}, fmt.Errorf("qr: %w", storage.ErrNotFound)
	}
	return cloneQR(t), nil
}

// TransitionQR implements storage.QRStore. mutate runs under the store lock:
// it must be quick and must not call the store.
func (s *Store) TransitionQR(ctx context.Context, id, from, to string, mutate func(*storage.QRTransaction) error) (storage.QRTransaction, error) {
	return s.transition(ctx, id, from, to, mutate, false)
}

// TransitionQRFrom implements storage.QRStore: the store lock makes a fresh
// read free, so it is TransitionQR.
func (s *Store) TransitionQRFrom(ctx context.Context, cur storage.QRTransaction, to string, mutate func(*storage.QRTransaction) error) (storage.QRTransaction, error) {
	return s.TransitionQR(ctx, cur.ID, cur.State, to, mutate)
}

// RedeemQR implements storage.QRStore.
func (s *Store) RedeemQR(ctx context.Context, id, from, to string) (storage.QRTransaction, error) {
	return s.transition(ctx, id, from, to, nil, true)
}

// RedeemQRFrom implements storage.QRStore: as RedeemQR (a fresh read is
// free under the store lock).
func (s *Store) RedeemQRFrom(ctx context.Context, cur storage.QRTransaction, to string) (storage.QRTransaction, error) {
	return s.RedeemQR(ctx, cur.ID, cur.State, to)
}

func (s *Store) transition(ctx context.Context, id, from, to string, mutate func(*storage.QRTransaction) error, redeem bool) (storage.QRTransaction, error) {
	if err := ctxErr(ctx); err != nil {
		return storage.QRTransaction{}, err
	}
	if to == "" {
		return storage.QRTransaction{}, fmt.Errorf("%w: empty target state", storage.ErrInvalidArgument)
	}
	s.mu.Lock()
	t, ok := s.liveQRLocked(id)
	if !ok {
		s.mu.Unlock()
		return storage.QRTransaction{}, fmt.Errorf("qr: %w", storage.ErrNotFound)
	}
	if t.State != from {
		s.mu.Unlock()
		if redeem && t.State == to {
			return storage.QRTransaction{}, fmt.Errorf("qr already %s: %w", to, storage.ErrAlreadyUsed)
		}
		return storage.QRTransaction{}, fmt.Errorf("qr is %s, not %s: %w", t.State, from, storage.ErrStateConflict)
	}
	next := cloneQR(t)
	if mutate != nil {
		if err := mutate(&next); err != nil {
			s.mu.Unlock()
			return storage.QRTransaction{}, err
		}
		if err := storage.CheckQRMutation(t, next); err != nil {
			s.mu.Unlock()
			return storage.QRTransaction{}, err
		}
	}
	next.State = to
	next.Version = t.Version + 1
	k := key(kindQR, id)
	s.qr[k] = next
	if !next.ExpiresAt.Equal(t.ExpiresAt) { // shortened
		s.expiries.file(next.ExpiresAt, expiryRef{in: inQR, key: k})
	}
	if ws := s.watchersLocked(id); len(ws) > 0 {
		woke := cloneQR(next) // the watchers' read-only copy
		wake(ws, &woke)       // non-blocking sends under the lock cannot race a close
	}
	s.mu.Unlock()
	return cloneQR(next), nil
}

// WatchQR implements storage.QRStore with in-process fan-out.
func (s *Store) WatchQR(ctx context.Context, id string) (<-chan *storage.QRTransaction, func(), error) {
	if err := ctxErr(ctx); err != nil {
		return nil, nil, err
	}
	w := &watcher{ch: make(chan *storage.QRTransaction, 1)}
	k := key(kindQR, id)
	s.mu.Lock()
	m := s.watchers[k]
	if m == nil {
		m = map[*watcher]struct{}{}
		s.watchers[k] = m
	}
	m[w] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			s.mu.Lock()
			if m := s.watchers[k]; m != nil {
				delete(m, w)
				if len(m) == 0 {
					delete(s.watchers, k)
				}
			}
			close(w.ch)
			s.mu.Unlock()
		})
	}
	stop := context.AfterFunc(ctx, cancel)
	return w.ch, func() { stop(); cancel() }, nil
}

// watchersLocked returns the watchers of id (snapshot).
func (s *Store) watchersLocked(id string) []*watcher {
	m := s.watchers[key(kindQR, id)]
	out := make([]*watcher, 0, len(m))
	for w := range m {
		out = append(out, w)
	}
	return out
}

func wake(ws []*watcher, t *storage.QRTransaction) {
	for _, w := range ws {
		storage.WakeQR(w.ch, t)
	}
}

// NotifyQR implements storage.QRStore.
func (s *Store) NotifyQR(ctx context.Context, id string) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Sending under the lock is safe (non-blocking) and cannot race a close.
	wake(s.watchersLocked(id), nil)
	return nil
}
