package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/storage"
)

// subscribeTimeout bounds the wait for Redis to confirm the subscription.
const subscribeTimeout = 3 * time.Second

// hub multiplexes every watcher of one Store over a single pub/sub
// connection holding one pattern subscription, PSUBSCRIBE {prefix}qrc:*,
// made when the first watcher arrives. A watcher then costs no Redis
// command (a SUBSCRIBE and an UNSUBSCRIBE per watched transaction before,
// two of a login's commands when the browser follows the event stream);
// every replica receives every QR wake-up of its prefix (the channel name
// and the record the transition wrote, or "1" from NotifyQR) and hands it,
// decoded, to its own watchers of that channel. go-redis
// re-subscribes the pattern after a reconnect; a wake-up published while
// the connection was down is lost, as with channel subscriptions, and the
// long poll's timeout and the event stream's 15 s ping re-read the state.
type hub struct {
	c       redis.UniversalClient
	pattern string
	log     *slog.Logger

	mu     sync.Mutex
	ps     *redis.PubSub
	closed bool
	ready  chan struct{} // closed when Redis first confirmed the pattern
	subs   map[string]map[*watch]struct{}
	done   chan struct{}
}

type watch struct {
	id string // the transaction (the channel name holds only its hash)
	ch chan *storage.QRTransaction
}

// newHub watches the channels that start with channelPrefix.
func newHub(c redis.UniversalClient, channelPrefix string, log *slog.Logger) *hub {
	return &hub{c: c, pattern: globEscape(channelPrefix) + "*", log: log, subs: map[string]map[*watch]struct{}{}}
}

// globEscape quotes the characters Redis glob patterns give a meaning to.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\^`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// watch registers a watcher of transaction id on channel and returns once
// the pattern subscription is confirmed by Redis.
func (h *hub) watch(ctx context.Context, channel, id string) (<-chan *storage.QRTransaction, func(), error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, nil, fmt.Errorf("redis watch: store closed: %w", storage.ErrUnavailable)
	}
	if h.ps == nil {
		h.ready, h.done = make(chan struct{}), make(chan struct{})
		h.ps = h.c.PSubscribe(context.WithoutCancel(ctx), h.pattern)
		go h.loop(h.ps, h.done, h.ready)
	}
	w := &watch{id: id, ch: make(chan *storage.QRTransaction, 1)}
	m := h.subs[channel]
	if m == nil {
		m = map[*watch]struct{}{}
		h.subs[channel] = m
	}
	m[w] = struct{}{}
	ready := h.ready
	h.mu.Unlock()

	var once sync.Once
	cancel := func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if m := h.subs[channel]; m != nil {
				delete(m, w)
				if len(m) == 0 {
					delete(h.subs, channel)
				}
			}
			close(w.ch)
		})
	}
	t := time.NewTimer(subscribeTimeout)
	defer t.Stop()
	select {
	case <-ready:
	case <-ctx.Done():
		cancel()
		return nil, nil, wrap("subscribe qr", ctx.Err())
	case <-t.C:
		cancel()
		return nil, nil, fmt.Errorf("redis subscribe qr: no confirmation: %w", storage.ErrUnavailable)
	}
	stop := context.AfterFunc(ctx, cancel)
	return w.ch, func() { stop(); cancel() }, nil
}

// loop delivers messages and the subscription's confirmation until ps closes.
func (h *hub) loop(ps *redis.PubSub, done, ready chan struct{}) {
	defer close(done)
	var confirmed sync.Once
	for msg := range ps.ChannelWithSubscriptions(redis.WithChannelSize(256)) {
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "psubscribe" {
				confirmed.Do(func() { close(ready) })
			}
		case *redis.Message:
			h.mu.Lock()
			var rec *storage.QRTransaction
			for w := range h.subs[m.Channel] {
				if rec == nil && m.Payload != "1" {
					if t, err := decodeQR(w.id, []byte(m.Payload)); err == nil {
						rec = &t
					}
				}
				storage.WakeQR(w.ch, rec) // nil: the watcher reads the transaction
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
