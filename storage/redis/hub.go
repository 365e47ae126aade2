package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/storage"
)

// subscribeTimeout bounds the wait for Redis to confirm a SUBSCRIBE.
const subscribeTimeout = 3 * time.Second

// hub multiplexes every watcher of one Store over a single pub/sub
// connection: a channel is SUBSCRIBEd when its first local watcher arrives
// and UNSUBSCRIBEd when the last one leaves.
type hub struct {
	c   redis.UniversalClient
	log *slog.Logger

	opMu    sync.Mutex // orders SUBSCRIBE/UNSUBSCRIBE with the bookkeeping below
	mu      sync.Mutex
	ps      *redis.PubSub
	closed  bool
	subs    map[string]map[*watch]struct{}
	live    map[string]bool            // SUBSCRIBE confirmed
	waiting map[string][]chan struct{} // closed on confirmation
	done    chan struct{}
}

type watch struct{ ch chan struct{} }

func newHub(c redis.UniversalClient, log *slog.Logger) *hub {
	return &hub{c: c, log: log, subs: map[string]map[*watch]struct{}{}, live: map[string]bool{},
		waiting: map[string][]chan struct{}{}}
}

// watch registers a watcher of channel and returns once the subscription is
// confirmed by Redis.
func (h *hub) watch(ctx context.Context, channel string) (<-chan struct{}, func(), error) {
	h.opMu.Lock()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.opMu.Unlock()
		return nil, nil, fmt.Errorf("redis watch: store closed: %w", storage.ErrUnavailable)
	}
	if h.ps == nil {
		h.ps = h.c.Subscribe(context.WithoutCancel(ctx))
		h.done = make(chan struct{})
		go h.loop(h.ps, h.done)
	}
	w := &watch{ch: make(chan struct{}, 1)}
	m := h.subs[channel]
	first := m == nil
	if first {
		m = map[*watch]struct{}{}
		h.subs[channel] = m
	}
	m[w] = struct{}{}
	var confirmed chan struct{}
	if !h.live[channel] {
		confirmed = make(chan struct{})
		h.waiting[channel] = append(h.waiting[channel], confirmed)
	}
	ps := h.ps
	h.mu.Unlock()

	var once sync.Once
	cancel := func() {
		once.Do(func() {
			h.opMu.Lock()
			defer h.opMu.Unlock()
			h.mu.Lock()
			last := false
			if m := h.subs[channel]; m != nil {
				delete(m, w)
				if len(m) == 0 {
					delete(h.subs, channel)
					delete(h.live, channel)
					last = true
				}
			}
			close(w.ch)
			ps := h.ps
			h.mu.Unlock()
			if last && ps != nil {
				if err := ps.Unsubscribe(context.Background(), channel); err != nil {
					h.log.Debug("redis unsubscribe failed", "err", err)
				}
			}
		})
	}
	var subErr error
	if first {
		subErr = ps.Subscribe(ctx, channel)
	}
	h.opMu.Unlock()
	if subErr != nil {
		cancel()
		return nil, nil, wrap("subscribe qr", subErr)
	}
	if confirmed != nil {
		t := time.NewTimer(subscribeTimeout)
		defer t.Stop()
		select {
		case <-confirmed:
		case <-ctx.Done():
			cancel()
			return nil, nil, wrap("subscribe qr", ctx.Err())
		case <-t.C:
			cancel()
			return nil, nil, fmt.Errorf("redis subscribe qr: no confirmation: %w", storage.ErrUnavailable)
		}
	}
	stop := context.AfterFunc(ctx, cancel)
	return w.ch, func() { stop(); cancel() }, nil
}

// loop delivers messages and subscription confirmations until ps closes.
func (h *hub) loop(ps *redis.PubSub, done chan struct{}) {
	defer close(done)
	for msg := range ps.ChannelWithSubscriptions(redis.WithChannelSize(256)) {
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			h.mu.Lock()
			if h.subs[m.Channel] != nil {
				h.live[m.Channel] = true
			}
			for _, c := range h.waiting[m.Channel] {
				close(c)
			}
			delete(h.waiting, m.Channel)
			h.mu.Unlock()
		case *redis.Message:
			h.mu.Lock()
			for w := range h.subs[m.Channel] {
				select { // coalesce: one pending wake-up is enough
				case w.ch <- struct{}{}:
				default:
				}
			}
			h.mu.Unlock()
		}
	}
}

func (h *hub) close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	ps, done := h.ps, h.done
	h.mu.Unlock()
	if ps == nil {
		return nil
	}
	err := ps.Close()
	<-done
	return err
}
