package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// syncTransport is esscbench's http.RoundTripper: plain HTTP/1.1 to the
// loopback target, each round trip done on the caller's goroutine over a
// pooled keep-alive connection.
//
// The tool shares the machine's cores with the server it measures, so its
// own CPU per operation caps the throughput it can report. net/http's
// Transport runs a read and a write goroutine per connection and hands
// every request and response between them and the caller: in a profile of
// the qr-login scenario that machinery (readLoop, writeLoop, the hand-offs
// and the garbage they make) was about 45% of the tool's CPU.
//
// Unlike net/http it cannot notice an idle connection closed by the server
// until it uses it: a request that fails on a reused connection before any
// byte of the answer arrived is sent again on a new one when net/http would
// do so too (replayable), and connections idle longer than maxIdleAge — well
// below esscd's two-minute IdleTimeout — are not reused at all.
type syncTransport struct {
	maxIdle int // idle connections kept per host
	dialer  net.Dialer
	// timeout bounds each round trip, the body's reading included, as
	// http.Client.Timeout would (0: none). Clients of this transport leave
	// their Timeout at 0: for a transport not its own, http.Client runs a
	// timer and a goroutine per request for it, ~7% of the tool's CPU.
	timeout time.Duration

	mu   sync.Mutex
	idle map[string][]*persistConn // by host:port, most recently used last
}

const (
	maxIdleAge = 30 * time.Second
	maxDrain   = 64 << 10 // unread body bytes Close may discard to keep a connection
)

func newSyncTransport(maxIdle int, timeout time.Duration) *syncTransport {
	return &syncTransport{maxIdle: maxIdle, timeout: timeout, dialer: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second},
		idle: make(map[string][]*persistConn)}
}

// persistConn is one keep-alive connection, used by one round trip at a time.
type persistConn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	addr   string
	reused bool
	idleAt time.Time
	stop   func() bool // stops closing nc when the request's context ends
}

// RoundTrip sends req on an idle connection to its host (or a new one) and
// reads the answer's header; the body hands the connection back. A failure
// on a reused connection before any byte of the answer is retried once, on a
// new connection, for a replayable request.
func (t *syncTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Scheme != "http" || req.URL.Host == "" {
		closeBody(req)
		return nil, fmt.Errorf("esscbench: transport: only http://host URLs (loopback, no TLS), not %q", req.URL.Redacted())
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	r := req
	for fresh := false; ; fresh = true {
		c, err := t.get(req.Context(), addr, fresh)
		if err != nil {
			closeBody(r)
			return nil, err
		}
		resp, retry, err := t.exchange(c, r)
		if err == nil {
			resp.Request = req
			return resp, nil
		}
		if fresh || !retry || !c.reused || !replayable(req) {
			return nil, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			r2 := *req
			r2.Body = body
			r = &r2
		}
	}
}

// exchange writes r on c and reads the answer's header. retry reports a
// failure before any byte of the answer arrived that was not the context's.
func (t *syncTransport) exchange(c *persistConn, r *http.Request) (resp *http.Response, retry bool, err error) {
	ctx := r.Context()
	dl, ok := ctx.Deadline()
	if t.timeout > 0 {
		if own := time.Now().Add(t.timeout); !ok || own.Before(dl) {
			dl = own
		}
	}
	c.nc.SetDeadline(dl) // zero: none (and clears the one Close's drain set)
	c.stop = nil
	if ctx.Done() != nil {
		c.stop = context.AfterFunc(ctx, func() { c.nc.Close() })
	}
	fail := func(err error, early bool) (*http.Response, bool, error) {
		t.release(c, false)
		var ne net.Error
		return nil, early && ctx.Err() == nil && !(errors.As(err, &ne) && ne.Timeout()), ctxErr(ctx, err)
	}
	if err := r.Write(c.bw); err != nil {
		return fail(err, true)
	}
	if err := c.bw.Flush(); err != nil {
		return fail(err, true)
	}
	if _, err := c.br.Peek(1); err != nil {
		return fail(err, true)
	}
	resp, err = http.ReadResponse(c.br, r)
	if err != nil {
		return fail(err, false)
	}
	keep := !resp.Close && !r.Close
	if resp.Body == http.NoBody { // HEAD, 204, 304, Content-Length: 0
		t.release(c, keep)
		return resp, false, nil
	}
	resp.Body = &connBody{t: t, c: c, rc: resp.Body, ctx: ctx, keep: keep}
	return resp, false, nil
}

// get takes addr's most recently used idle connection or, with fresh set
// or none idle, dials one.
func (t *syncTransport) get(ctx context.Context, addr string, fresh bool) (*persistConn, error) {
	now := time.Now()
	t.mu.Lock()
	for pool := t.idle[addr]; !fresh && len(pool) > 0; pool = t.idle[addr] {
		c := pool[len(pool)-1]
		pool[len(pool)-1] = nil
		t.idle[addr] = pool[:len(pool)-1]
		if now.Sub(c.idleAt) < maxIdleAge {
			t.mu.Unlock()
			c.reused = true
			return c, nil
		}
		c.nc.Close()
	}
	t.mu.Unlock()
	if _, err := CheckLoopback("http://" + addr); err != nil {
		return nil, err
	}
	nc, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &persistConn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 4<<10), addr: addr}, nil
}

// release ends c's round trip: back to the pool when reuse is set, the
// request's context did not end meanwhile and the pool has room; closed
// otherwise.
func (t *syncTransport) release(c *persistConn, reuse bool) {
	if c.stop != nil && !c.stop() {
		reuse = false // the context ended: nc is closed or being closed
	}
	c.stop = nil
	if reuse {
		c.idleAt = time.Now()
		t.mu.Lock()
		if pool := t.idle[c.addr]; len(pool) < t.maxIdle {
			t.idle[c.addr] = append(pool, c)
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
	}
	c.nc.Close()
}

// CloseIdleConnections closes the pooled connections (http.Client's
// CloseIdleConnections calls it).
func (t *syncTransport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for addr, pool := range t.idle {
		for _, c := range pool {
			c.nc.Close()
		}
		delete(t.idle, addr)
	}
}

// connBody is a response body that gives its connection back once read to
// the end (on Read's io.EOF or on Close, whichever comes first). Close may
// be called while another goroutine is blocked in Read (an event stream):
// it then closes the connection, which ends that Read.
type connBody struct {
	t    *syncTransport
	c    *persistConn
	rc   io.ReadCloser // net/http's body reader over c.br
	ctx  context.Context
	keep bool // the connection may carry another request after this answer

	mu      sync.Mutex
	reading bool
	done    bool // c released: rc must not be touched
	closed  bool
}

var errBodyClosed = errors.New("esscbench: read on closed response body")

func (b *connBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return 0, errBodyClosed
	case b.done:
		b.mu.Unlock()
		return 0, io.EOF
	}
	b.reading = true
	b.mu.Unlock()
	n, err := b.rc.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading = false
	switch {
	case b.done: // closed under us
		if err != nil {
			err = errBodyClosed
		}
	case err == io.EOF:
		b.done = true
		b.t.release(b.c, b.keep)
	case err != nil:
		b.done = true
		b.t.release(b.c, false)
		err = ctxErr(b.ctx, err)
	}
	return n, err
}

// Close discards what is left of the body if it has already arrived (a
// read deadline of now keeps the drain from waiting on the server) and
// keeps the connection when that reaches the end; otherwise it closes it.
func (b *connBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	switch {
	case b.done:
	case b.reading:
		b.done = true
		b.t.release(b.c, false)
	default:
		b.done = true
		b.c.nc.SetReadDeadline(time.Now())
		_, err := io.CopyN(io.Discard, b.rc, maxDrain)
		b.t.release(b.c, b.keep && err == io.EOF)
	}
	return nil
}

// replayable is net/http's rule for sending a request again on a new
// connection: an idempotent method and a body that can be had again.
func replayable(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody && r.GetBody == nil {
		return false
	}
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, ok := r.Header["Idempotency-Key"]
	_, xok := r.Header["X-Idempotency-Key"]
	return ok || xok
}

// ctxErr prefers the context's error to the one its end made on the
// connection: a closed connection, or an i/o timeout from the deadline,
// which can expire just before the context's own timer fires.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if dl, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return err
}

func closeBody(r *http.Request) {
	if r.Body != nil {
		r.Body.Close()
	}
}
