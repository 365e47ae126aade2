package redisstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/storage"
)

const kindQR = "qr"

func (s *Store) qrChannel(id string) string { return s.p + "qrc:" + storage.HashKey(kindQR, id) }

// A QR transaction is one string key: "x|v|s|" (expiry ms, version, state:
// what the scripts compare) followed by the rest in a length-prefixed
// binary form only Go reads (client id, binding hash, created-at, data).
// A read is one GET; a transition one script: from the caller's read
// (TransitionQRFrom, RedeemQRFrom) SET … GET and PUBLISH, otherwise GET, SET
// and PUBLISH (no PUBLISH for a redemption).

func encodeQRRest(t storage.QRTransaction) []byte {
	b := make([]byte, 0, 32+len(t.ClientID)+len(t.BindingHash)+len(t.Data))
	b = binary.AppendUvarint(b, uint64(len(t.ClientID)))
	b = append(b, t.ClientID...)
	b = binary.AppendUvarint(b, uint64(len(t.BindingHash)))
	b = append(b, t.BindingHash...)
	b = binary.AppendVarint(b, ms(t.CreatedAt))
	return append(b, t.Data...)
}

func encodeQR(t storage.QRTransaction) []byte {
	b := strconv.AppendInt(nil, ms(t.ExpiresAt), 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, t.Version, 10)
	b = append(b, '|')
	b = append(b, t.State...)
	b = append(b, '|')
	return append(b, encodeQRRest(t)...)
}

var errQRRecord = errors.New("redis: malformed qr record")

func decodeQR(id string, v []byte) (storage.QRTransaction, error) {
	t := storage.QRTransaction{ID: id}
	var fields [3][]byte
	for i := range fields {
		j := bytes.IndexByte(v, '|')
		if j < 0 {
			return t, errQRRecord
		}
		fields[i], v = v[:j], v[j+1:]
	}
	x, err1 := strconv.ParseInt(string(fields[0]), 10, 64)
	ver, err2 := strconv.ParseInt(string(fields[1]), 10, 64)
	if err1 != nil || err2 != nil {
		return t, errQRRecord
	}
	t.ExpiresAt, t.Version, t.State = time.UnixMilli(x), ver, string(fields[2])
	n, k := binary.Uvarint(v)
	if k <= 0 || uint64(len(v)-k) < n {
		return t, errQRRecord
	}
	t.ClientID, v = string(v[k:k+int(n)]), v[k+int(n):]
	n, k = binary.Uvarint(v)
	if k <= 0 || uint64(len(v)-k) < n {
		return t, errQRRecord
	}
	t.BindingHash, v = append([]byte(nil), v[k:k+int(n)]...), v[k+int(n):]
	ca, k := binary.Varint(v)
	if k <= 0 {
		return t, errQRRecord
	}
	t.CreatedAt, t.Data = time.UnixMilli(ca), append([]byte(nil), v[k:]...)
	return t, nil
}

// validQRState: a state is a word of the QR layer; '|' would break the record.
func validQRState(st string) bool { return st != "" && !strings.ContainsRune(st, '|') }

// CreateQR implements storage.QRStore (one Lua script).
func (s *Store) CreateQR(ctx context.Context, t storage.QRTransaction) (storage.QRTransaction, error) {
	now := s.now()
	if t.ID == "" || !validQRState(t.State) || !t.ExpiresAt.After(now) {
		return storage.QRTransaction{}, fmt.Errorf("%w: qr transaction needs id, state and a future expiry", storage.ErrInvalidArgument)
	}
	t.Version = 1
	t.CreatedAt = now.Truncate(time.Millisecond)
	t.ExpiresAt = t.ExpiresAt.Truncate(time.Millisecond)
	key, rec, ttl := s.key(kindQR, t.ID), encodeQR(t), s.ttlMS(t.ExpiresAt)
	// One command when the id is new (always, for 128-bit random ids); the
	// script decides only when a record is there (a live one is a
	// duplicate, one the store clock has expired is replaced).
	err := s.c.SetArgs(ctx, key, rec, redis.SetArgs{Mode: "NX", TTL: time.Duration(ttl) * time.Millisecond}).Err()
	if err == nil {
		return t, nil
	}
	if !errors.Is(err, redis.Nil) {
		return storage.QRTransaction{}, wrap("create qr", err)
	}
	v, err := s.run(ctx, "create qr", qrCreate, []string{key}, ms(now), ttl, rec)
	if err != nil {
		return storage.QRTransaction{}, err
	}
	if v.(int64) == 0 {
		return storage.QRTransaction{}, fmt.Errorf("qr: %w", storage.ErrDuplicate)
	}
	return t, nil
}

// GetQR implements storage.QRStore (one GET).
func (s *Store) GetQR(ctx context.Context, id string) (storage.QRTransaction, error) {
	v, err := s.c.Get(ctx, s.key(kindQR, id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return storage.QRTransaction{}, fmt.Errorf("qr: %w", storage.ErrNotFound)
	}
	if err != nil {
		return storage.QRTransaction{}, wrap("get qr", err)
	}
	t, err := decodeQR(id, v)
	if err != nil {
		return storage.QRTransaction{}, err
	}
	if ms(t.ExpiresAt) <= ms(s.now()) {
		return storage.QRTransaction{}, fmt.Errorf("qr: %w", storage.ErrNotFound)
	}
	return t, nil
}

// maxCASRetries bounds optimistic retries when a mutate-transition loses a
// version race while the state is still `from` (only possible with
// from == to transitions by others).
const maxCASRetries = 8

// TransitionQR implements storage.QRStore. Without mutate it is one Lua
// script; with mutate it reads, mutates and writes with a version check.
func (s *Store) TransitionQR(ctx context.Context, id, from, to string, mutate func(*storage.QRTransaction) error) (storage.QRTransaction, error) {
	if !validQRState(to) {
		return storage.QRTransaction{}, fmt.Errorf("%w: bad target state", storage.ErrInvalidArgument)
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
	if !validQRState(to) {
		return storage.QRTransaction{}, fmt.Errorf("%w: bad target state", storage.ErrInvalidArgument)
	}
	t, err := s.mutateFrom(ctx, cur, to, mutate)
	if err == errVersionMoved {
		return s.mutateLoop(ctx, cur.ID, cur.State, to, mutate)
	}
	return t, err
}

// RedeemQR implements storage.QRStore (one Lua script).
func (s *Store) RedeemQR(ctx context.Context, id, from, to string) (storage.QRTransaction, error) {
	if !validQRState(to) {
		return storage.QRTransaction{}, fmt.Errorf("%w: bad target state", storage.ErrInvalidArgument)
	}
	return s.cas(ctx, id, from, to, "", nil, true)
}

// RedeemQRFrom implements storage.QRStore: one script (one SET … GET in it)
// when nobody wrote since cur was read.
func (s *Store) RedeemQRFrom(ctx context.Context, cur storage.QRTransaction, to string) (storage.QRTransaction, error) {
	if !validQRState(to) {
		return storage.QRTransaction{}, fmt.Errorf("%w: bad target state", storage.ErrInvalidArgument)
	}
	t, err := s.cas(ctx, cur.ID, cur.State, to, strconv.FormatInt(cur.Version, 10), &cur, true)
	if err == errVersionMoved {
		return s.RedeemQR(ctx, cur.ID, cur.State, to)
	}
	return t, err
}

var errVersionMoved = fmt.Errorf("qr version moved")

func (s *Store) cas(ctx context.Context, id, from, to, version string, next *storage.QRTransaction, redeem bool) (storage.QRTransaction, error) {
	set, x, rest, ttl := "0", int64(0), []byte(nil), int64(0)
	if next != nil {
		if version == "" {
			return storage.QRTransaction{}, fmt.Errorf("%w: a whole-record transition needs the version it replaces", storage.ErrInvalidArgument)
		}
		set, x, rest, ttl = "1", ms(next.ExpiresAt), encodeQRRest(*next), s.ttlMS(next.ExpiresAt)
	}
	channel := s.qrChannel(id)
	if redeem {
		channel = "" // nobody watches a redemption (storage.Sessions.WatchQR)
	}
	v, err := s.run(ctx, "transition qr", qrCAS, []string{s.key(kindQR, id)},
		ms(s.now()), from, to, version, set, rest, x, ttl, channel)
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
		val, _ := res[1].(string)
		return decodeQR(id, []byte(val))
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
func (s *Store) WatchQR(ctx context.Context, id string) (<-chan *storage.QRTransaction, func(), error) {
	return s.hub.watch(ctx, s.qrChannel(id), id)
}
