package sql

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/essc-project/essc/storage"
)

// maxGroup bounds how many queued writes one commit carries.
const maxGroup = 256

// groupLinger bounds how long a committer waits after the first write of a
// group for others to join it. Without waiting a group held only what
// arrived during the previous commit (mostly one write at a thousand logins
// a second on SQLite). The wait is adaptive (linger): it lasts only while
// yielding the processor lets other goroutines queue more, so an idle
// server commits at once and a busy one fills its groups.
const groupLinger = time.Millisecond

// committer group-commits writes made outside a transaction: every caller
// still returns only after its write is committed (or failed), but writes
// queued together share one commit. commit receives the group in queue
// order and must set each request's v (the stored value) or err.
type committer[T any] struct {
	what   string // in errors: "append audit", "add sign-in"
	commit func(group []*groupReq[T])
	mu     sync.Mutex
	q      []*groupReq[T]
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

type groupReq[T any] struct {
	v   T
	err error
	ok  chan struct{}
}

func newCommitter[T any](what string, commit func(group []*groupReq[T])) *committer[T] {
	return &committer[T]{what: what, commit: commit, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// submit queues v and waits until it is committed (or failed), or ctx ends
// (a context that ended before the call queues nothing; one that ends while
// waiting may still see its write committed).
func (c *committer[T]) submit(ctx context.Context, v T) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil { // ended before the call: nothing is queued
		return zero, fmt.Errorf("sql: %s: %w", c.what, err)
	}
	c.once.Do(func() { go c.run() })
	req := &groupReq[T]{v: v, ok: make(chan struct{})}
	c.mu.Lock()
	select {
	case <-c.stop:
		c.mu.Unlock()
		return zero, fmt.Errorf("sql: %s: registry closed: %w", c.what, storage.ErrUnavailable)
	default:
	}
	c.q = append(c.q, req)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	select {
	case <-req.ok:
		return req.v, req.err
	case <-ctx.Done():
		return zero, fmt.Errorf("sql: %s: %w", c.what, ctx.Err())
	}
}

func (c *committer[T]) run() {
	defer close(c.done)
	for {
		select {
		case <-c.wake:
		case <-c.stop:
			c.flush() // callers queued before close still get their answer
			return
		}
		c.linger()
		c.flush()
	}
}

// linger yields the processor while that lets more writes queue, for at
// most groupLinger or until a group is full.
func (c *committer[T]) linger() {
	deadline := time.Now().Add(groupLinger)
	n, idle := c.queued(), 0
	for n < maxGroup && idle < lingerIdleYields && time.Now().Before(deadline) {
		runtime.Gosched()
		m := c.queued()
		if m == n {
			idle++
		} else {
			n, idle = m, 0
		}
	}
}

// lingerIdleYields is how many yields in a row may pass without a new write
// before the group is committed.
const lingerIdleYields = 3

func (c *committer[T]) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.q)
}

// flush commits everything queued, in groups of at most maxGroup.
func (c *committer[T]) flush() {
	for {
		c.mu.Lock()
		n := min(len(c.q), maxGroup)
		group := c.q[:n:n]
		c.q = c.q[n:]
		c.mu.Unlock()
		if n == 0 {
			return
		}
		c.commit(group)
		for _, r := range group {
			if r.err != nil {
				var zero T
				r.v, r.err = zero, fmt.Errorf("sql: %s: %w", c.what, r.err)
			}
			close(r.ok)
		}
	}
}

func (c *committer[T]) close() {
	c.mu.Lock()
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.mu.Unlock()
	c.once.Do(func() { close(c.done) }) // never started
	<-c.done
}
