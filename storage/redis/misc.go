package redisstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/storage"
)

// Seen implements storage.ReplayCache (one Lua script).
func (s *Store) Seen(ctx context.Context, namespace, key string, ttl time.Duration) (bool, error) {
	if ttl <= 0 || key == "" {
		return false, fmt.Errorf("%w: replay key and ttl required", storage.ErrInvalidArgument)
	}
	now := s.now()
	exp := now.Add(ttl)
	return s.setIfAbsent(ctx, "seen", s.key("seen:"+namespace, key), now, exp)
}

// setIfAbsent records key until exp unless a live record exists; true when
// this call recorded it. The common case is one command (SET NX GET, Redis
// ≥ 7.0): nothing there → stored. A record that is still in Redis but
// expired by the store clock (inside the TTL's slack second, or under an
// injected clock) is replaced by the setIfAbsent script, atomically.
func (s *Store) setIfAbsent(ctx context.Context, op, key string, now, exp time.Time) (bool, error) {
	old, err := s.c.SetArgs(ctx, key, ms(exp), redis.SetArgs{Mode: "NX", Get: true,
		TTL: time.Duration(s.ttlMS(exp)) * time.Millisecond}).Result()
	if errors.Is(err, redis.Nil) {
		return true, nil
	}
	if err != nil {
		return false, wrap(op, err)
	}
	if atoi(old) > ms(now) {
		return false, nil
	}
	v, err := s.run(ctx, op, setIfAbsent, []string{key}, ms(now), ms(exp), s.ttlMS(exp))
	if err != nil {
		return false, err
	}
	return v.(int64) == 1, nil
}

// Allow implements storage.RateLimiter: a counter per clock-aligned window
// (the window's start is in the key) that expires with the window. One
// command in the common case: the first hit of a window creates the counter
// with its expiry (SET NX PX) and later hits count with INCR, which keeps
// it. The store remembers the windows this process has counted in, to send
// the likelier command first; a wrong guess costs a second command, never a
// wrong count. A counter that INCR had to create (gone since: evicted, or its
// window ended meanwhile) gets its expiry in a second command.
func (s *Store) Allow(ctx context.Context, key string, limit int, window time.Duration) (storage.RateDecision, error) {
	if limit <= 0 || window <= 0 || key == "" {
		return storage.RateDecision{}, fmt.Errorf("%w: rate key, limit and window required", storage.ErrInvalidArgument)
	}
	now := s.now()
	start, end := storage.Window(now, window)
	k := s.key("rate", key) + ":" + strconv.FormatInt(ms(start), 10)
	ttl := time.Duration(s.ttlMS(end)) * time.Millisecond
	if !s.rates.hit(k, ms(end), ms(now)) {
		created, err := s.c.SetNX(ctx, k, 1, ttl).Result()
		if err != nil {
			return storage.RateDecision{}, wrap("rate", err)
		}
		if created {
			return storage.Decide(1, limit, now, end), nil
		}
	}
	n, err := s.c.Incr(ctx, k).Result()
	if err == nil && n == 1 {
		err = s.c.PExpire(ctx, k, ttl).Err()
	}
	if err != nil {
		return storage.RateDecision{}, wrap("rate", err)
	}
	return storage.Decide(int(n), limit, now, end), nil
}

// windowMemo remembers the per-window keys this process has written (key →
// window end, ms): rate counters, subject-index windows. Bounded: a full
// memo drops ended windows, then everything.
type windowMemo struct {
	mu sync.Mutex
	m  map[string]int64
}

const windowMemoSize = 1 << 14

// hit records k (a window ending at end) and reports whether it was there.
func (r *windowMemo) hit(k string, end, now int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[k]; ok {
		return true
	}
	if r.m == nil || len(r.m) >= windowMemoSize {
		if r.m != nil {
			maps.DeleteFunc(r.m, func(_ string, e int64) bool { return e <= now })
		}
		if r.m == nil || len(r.m) >= windowMemoSize/2 {
			r.m = make(map[string]int64)
		}
	}
	r.m[k] = end
	return false
}

// PutOnce implements storage.OnceStore.
func (s *Store) PutOnce(ctx context.Context, namespace, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 || key == "" {
		return fmt.Errorf("%w: once key and ttl required", storage.ErrInvalidArgument)
	}
	now := s.now()
	exp := now.Add(ttl)
	v, err := s.run(ctx, "put once", putFields, rec(s.key("once:"+namespace, key)), ms(now), s.ttlMS(exp), value,
		"x", ms(exp))
	if err != nil {
		return err
	}
	if v.(int64) == 0 {
		return fmt.Errorf("once %s: %w", namespace, storage.ErrDuplicate)
	}
	return nil
}

// TakeOnce implements storage.OnceStore (one Lua script: read and delete).
func (s *Store) TakeOnce(ctx context.Context, namespace, key string) ([]byte, error) {
	f, d, err := s.take(ctx, "take once", s.key("once:"+namespace, key))
	if err != nil {
		return nil, err
	}
	if f == nil {
		return nil, fmt.Errorf("once %s: %w", namespace, storage.ErrNotFound)
	}
	return d, nil
}

// take runs takeFields on a record; nil map when absent or expired.
func (s *Store) take(ctx context.Context, op, meta string) (map[string]string, []byte, error) {
	v, err := s.run(ctx, op, takeFields, rec(meta), ms(s.now()))
	if err != nil {
		return nil, nil, err
	}
	res, _ := v.([]any)
	if len(res) < 3 || res[0].(int64) != 1 {
		return nil, nil, nil
	}
	d, _ := res[2].(string)
	return pairs(res[1]), []byte(d), nil
}

// pairs turns an HGETALL array reply into a map.
func pairs(v any) map[string]string {
	arr, _ := v.([]any)
	m := make(map[string]string, len(arr)/2)
	for i := 0; i+1 < len(arr); i += 2 {
		k, _ := arr[i].(string)
		val, _ := arr[i+1].(string)
		m[k] = val
	}
	return m
}
