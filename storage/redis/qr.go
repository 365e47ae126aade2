package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/essc-project/essc/storage"
)

const kindQR = "qr"

func (s *Store) qrChannel(id string) string { return s.p + "qrc:" + storage.HashKey(kindQR, id) }

func qrFrom(id string, m map[string]string, data []byte) storage.QRTransaction {
	return storage.QRTransaction{
		ID:          id,
		State:       m["s"],
		Version:     atoi(m["v"]),
		ClientID:    m["c"],
		BindingHash: []byte(m["b"]),
		CreatedAt:   time.UnixMilli(atoi(m["ca"])),
		ExpiresAt:   time.UnixMilli(atoi(m["x"])),
		Data:        data,
	}
}

// CreateQR implements storage.QRStore (one Lua script).
func (s *Store) CreateQR(ctx context.Context, t storage.QRTransaction) (storage.QRTransaction, error) {
	now := s.now()
	if t.ID == "" || t.State == "" || !t.ExpiresAt.After(now) {
		return storage.QRTransaction{}, fmt.Errorf("%w: qr transaction needs id, state and a future expiry", storage.ErrInvalidArgument)
	}
	t.Version = 1
	t.CreatedAt = now.Truncate(time.Millisecond)
	t.ExpiresAt = t.ExpiresAt.Truncate(time.Millisecond)
	v, err := s.run(ctx, "create qr", putFields, rec(s.key(kindQR, t.ID)), ms(now), s.ttlMS(t.ExpiresAt), t.Data,
		"s", t.State, "v", 1, "c", t.ClientID, "b", t.BindingHash, "ca", ms(t.CreatedAt), "x", ms(t.ExpiresAt))
	if err != nil {
		return storage.QRTransaction{}, err
	}
	if v.(int64) == 0 {
		return storage.QRTransaction{}, fmt.Errorf("qr: %w", storage.ErrDuplicate)
	}
	return t, nil
}

// GetQR implements storage.QRStore.
func (s *Store) GetQR(ctx context.Context, id string) (storage.QRTransaction, error) {
	m, d, err := s.getRec(ctx, "get qr", s.key(kindQR, id))
	if err != nil {
		return storage.QRTransaction{}, err
	}
	if x, ok := m["x"]; !ok || atoi(x) <= ms(s.now()) {
		return storage.QRTransaction{}, fmt.Errorf("qr: %w", storage.ErrNotFound)
	}
	return qrFrom(id, m, d), nil
}

// maxCASRetries bounds optimistic retries when a mutate-transition loses a
// version race while the state is still `from` (only possible with
// from == to transitions by others).
const maxCASRetries = 8

// TransitionQR implements storage.QRStore. Without mutate it is one Lua
// script; with mutate it reads, mutates and writes with a version check.
func (s *Store) TransitionQR(ctx context.Context, id, from, to string, mutate func(*storage.QRTransaction) error) (storage.QRTransaction, error) {
	if to == "" {
		return storage.QRTransaction{}, fmt.Errorf("%w: empty target state", storage.ErrInvalidArgument)
	}
	if mutate == nil {
		return s.cas(ctx, id, from, to, "", nil, false)
	}
	return s.mutateLoop(ctx, id, from, to, mutate)
}

func (s *Store) mutateLoop(ctx context.Context, id, from, to string, mutate func(*storage.QRTransaction) error) (storage.QRTransaction, error) {
	for range maxCASRetries {
		cur, err := s.GetQR(ctx, id)
		if err != nil {
			return storage.QRTransaction{}, err
		}
		if cur.State != from {
			return storage.QRTransaction{}, fmt.Errorf("qr is %s, not %s: %w", cur.State, from, storage.ErrStateConflict)
		}
		t, err := s.mutateFrom(ctx, cur, to, mutate)
		if err == errVersionMoved {
			continue
		}
		return t, err
	}
	return storage.QRTransaction{}, fmt.Errorf("qr: too many concurrent writers: %w", storage.ErrStateConflict)
}

// mutateFrom applies mutate to a copy of cur and writes it if the stored
// version is still cur's (errVersionMoved if not).
func (s *Store) mutateFrom(ctx context.Context, cur storage.QRTransaction, to string, mutate func(*storage.QRTransaction) error) (storage.QRTransaction, error) {
	next := cur
	next.BindingHash = append([]byte(nil), cur.BindingHash...)
	next.Data = append([]byte(nil), cur.Data...)
	if mutate != nil {
		if err := mutate(&next); err != nil {
			return storage.QRTransaction{}, err
		}
	}
	if err := storage.CheckQRMutation(cur, next); err != nil {
		return storage.QRTransaction{}, err
	}
	return s.cas(ctx, cur.ID, cur.State, to, strconv.FormatInt(cur.Version, 10), &next, false)
}

// TransitionQRFrom implements storage.QRStore: one script when nobody wrote
// since cur was read.
func (s *Store) TransitionQRFrom(ctx context.Context, cur storage.QRTransaction, to string, mutate func(*storage.QRTransaction) error) (storage.QRTransaction, error) {
	if to == "" {
		return storage.QRTransaction{}, fmt.Errorf("%w: empty target state", storage.ErrInvalidArgument)
	}
	t, err := s.mutateFrom(ctx, cur, to, mutate)
	if err == errVersionMoved {
		return s.mutateLoop(ctx, cur.ID, cur.State, to, mutate)
	}
	return t, err
}

// RedeemQR implements storage.QRStore (one Lua script).
func (s *Store) RedeemQR(ctx context.Context, id, from, to string) (storage.QRTransaction, error) {
	if to == "" {
		return storage.QRTransaction{}, fmt.Errorf("%w: empty target state", storage.ErrInvalidArgument)
	}
	return s.cas(ctx, id, from, to, "", nil, true)
}

var errVersionMoved = fmt.Errorf("qr version moved")

func (s *Store) cas(ctx context.Context, id, from, to, version string, next *storage.QRTransaction, redeem bool) (storage.QRTransaction, error) {
	set, b, x, d, ttl := "0", []byte(nil), int64(0), []byte(nil), int64(0)
	if next != nil {
		set, b, x, d, ttl = "1", next.BindingHash, ms(next.ExpiresAt), next.Data, s.ttlMS(next.ExpiresAt)
	}
	v, err := s.run(ctx, "transition qr", qrCAS, rec(s.key(kindQR, id)),
		ms(s.now()), from, to, version, set, b, x, d, ttl, s.qrChannel(id))
	if err != nil {
		return storage.QRTransaction{}, err
	}
	res, _ := v.([]any)
	if len(res) < 2 {
		return storage.QRTransaction{}, fmt.Errorf("redis transition qr: unexpected reply %v", v)
	}
	switch res[0].(int64) {
	case 1:
		if next != nil { // the script wrote exactly next, one version on
			t := *next
			t.State, t.Version = to, next.Version+1
			return t, nil
		}
		var d []byte
		if len(res) == 3 {
			ds, _ := res[2].(string)
			d = []byte(ds)
		}
		return qrFrom(id, pairs(res[1]), d), nil
	case 2:
		state, _ := res[1].(string)
		if redeem && state == to {
			return storage.QRTransaction{}, fmt.Errorf("qr already %s: %w", to, storage.ErrAlreadyUsed)
		}
		return storage.QRTransaction{}, fmt.Errorf("qr is %s, not %s: %w", state, from, storage.ErrStateConflict)
	case 3:
		return storage.QRTransaction{}, errVersionMoved
	default:
		return storage.QRTransaction{}, fmt.Errorf("qr: %w", storage.ErrNotFound)
	}
}

// NotifyQR implements storage.QRStore (PUBLISH on the transaction channel).
func (s *Store) NotifyQR(ctx context.Context, id string) error {
	return wrap("notify qr", s.c.Publish(ctx, s.qrChannel(id), "1").Err())
}

// WatchQR implements storage.QRStore over the shared subscription.
func (s *Store) WatchQR(ctx context.Context, id string) (<-chan struct{}, func(), error) {
	return s.hub.watch(ctx, s.qrChannel(id))
}
