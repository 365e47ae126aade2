package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// transportServer is an httptest server that counts the connections made
// to it and the requests each path got.
type transportServer struct {
	*httptest.Server
	conns atomic.Int64
	mu    sync.Mutex
	hits  map[string]int
}

func (s *transportServer) hitsOf(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// large is the /large body: deterministic, bigger than every buffer.
var large = bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB

func newTransportServer(t *testing.T) *transportServer {
	s := &transportServer{hits: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RawQuery, b)
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		for i := range 10 {
			fmt.Fprintf(w, "chunk%d;", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/large", func(w http.ResponseWriter, r *http.Request) { w.Write(large) })
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/cookie", func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("sid"); err == nil {
			io.WriteString(w, "sid="+c.Value)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "s3cret", Path: "/"})
		io.WriteString(w, "set")
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/echo?redirected", http.StatusFound)
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("partial") {
			io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done()
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		for {
			if _, err := io.WriteString(w, "data: tick\n\n"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.Method+" "+r.URL.Path]++
		s.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	srv.Start()
	s.Server = srv
	t.Cleanup(srv.Close)
	return s
}

func (t *syncTransport) idleCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, pool := range t.idle {
		n += len(pool)
	}
	return n
}

// get GETs path and returns the body.
func get(ctx context.Context, c *http.Client, u string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func mustGet(t *testing.T, c *http.Client, u, want string) {
	t.Helper()
	code, body, err := get(context.Background(), c, u)
	if err != nil || code != http.StatusOK || body != want {
		t.Fatalf("GET %s = %d %q, %v; want 200 %q", u, code, body, err, want)
	}
}

func wantConns(t *testing.T, s *transportServer, want int64) {
	t.Helper()
	if got := s.conns.Load(); got != want {
		t.Fatalf("server saw %d connections, want %d", got, want)
	}
}

// within fails the test if f does not return within d.
func within(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("did not return within %v", d)
	}
}

// readTimesOut reads resp's body, which must end in a timeout within 2 s
// and leave no connection in tr's pool.
func readTimesOut(t *testing.T, tr *syncTransport, resp *http.Response) {
	t.Helper()
	within(t, 2*time.Second, func() {
		if _, err := io.ReadAll(resp.Body); errKind(err) != "timeout" {
			t.Errorf("read past the timeout: %v (kind %s), want a timeout", err, errKind(err))
		}
	})
	resp.Body.Close()
	if tr.idleCount() != 0 {
		t.Fatal("timed-out connection kept in the pool")
	}
}

func TestSyncTransport(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client)
	}{
		{"ok/sequential-requests-share-one-connection", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			for i := range 20 {
				mustGet(t, c, s.URL+"/echo?"+strconv.Itoa(i), "GET "+strconv.Itoa(i)+" ")
			}
			wantConns(t, s, 1)
		}},
		{"ok/concurrent-requests-bounded-by-pool", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for g := range 16 {
				wg.Go(func() {
					for i := range 50 {
						q := fmt.Sprintf("%d-%d", g, i)
						code, body, err := get(context.Background(), c, s.URL+"/echo?"+q)
						if err == nil && (code != http.StatusOK || body != "GET "+q+" ") {
							err = fmt.Errorf("GET %s = %d %q", q, code, body)
						}
						if err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if n := s.conns.Load(); n < 1 || n > int64(tr.maxIdle) {
				t.Fatalf("server saw %d connections, want 1..%d", n, tr.maxIdle)
			}
			if s.hitsOf("GET /echo") != 16*50 {
				t.Fatalf("server got %d requests, want %d", s.hitsOf("GET /echo"), 16*50)
			}
		}},
		{"ok/chunked-body", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			resp, err := c.Get(s.URL + "/chunked")
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := "chunk0;chunk1;chunk2;chunk3;chunk4;chunk5;chunk6;chunk7;chunk8;chunk9;"
			if err != nil || string(b) != want || resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 {
				t.Fatalf("body %q, %v, length %d, encoding %v", b, err, resp.ContentLength, resp.TransferEncoding)
			}
			mustGet(t, c, s.URL+"/echo", "GET  ")
			wantConns(t, s, 1)
		}},
		{"ok/large-body", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			for range 3 {
				code, body, err := get(context.Background(), c, s.URL+"/large")
				if err != nil || code != http.StatusOK || body != string(large) {
					t.Fatalf("GET /large = %d, %d bytes, %v", code, len(body), err)
				}
			}
			wantConns(t, s, 1)
		}},
		{"ok/post-bodies", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			resp, err := c.Post(s.URL+"/echo?a=1", "text/plain", strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "POST a=1 hello" {
				t.Fatalf("sized body echoed %q", b)
			}
			// A body of unknown length goes chunked.
			resp, err = c.Post(s.URL+"/echo", "text/plain", io.NopCloser(strings.NewReader(strings.Repeat("x", 10000))))
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "POST  "+strings.Repeat("x", 10000) {
				t.Fatalf("chunked body echoed %d bytes", len(b))
			}
			wantConns(t, s, 1)
		}},
		{"ok/no-body-answers-return-the-connection", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			resp, err := c.Head(s.URL + "/echo")
			if err != nil {
				t.Fatal(err)
			}
			if tr.idleCount() != 1 { // before the body is closed
				t.Fatalf("HEAD: %d idle connections, want 1", tr.idleCount())
			}
			resp.Body.Close()
			if code, _, err := get(context.Background(), c, s.URL+"/empty"); err != nil || code != http.StatusNoContent {
				t.Fatalf("GET /empty = %d, %v", code, err)
			}
			mustGet(t, c, s.URL+"/echo", "GET  ")
			wantConns(t, s, 1)
		}},
		{"ok/cookie-jar", func(t *testing.T, s *transportServer, tr *syncTransport, _ *http.Client) {
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Transport: tr, Jar: jar, Timeout: 5 * time.Second}
			mustGet(t, c, s.URL+"/cookie", "set")
			mustGet(t, c, s.URL+"/cookie", "sid=s3cret")
		}},
		{"ok/redirect-not-followed", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			resp, err := c.Get(s.URL + "/redirect")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close() // unread: the small rest is drained
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/echo?redirected" {
				t.Fatalf("got %d to %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			if s.hitsOf("GET /echo") != 0 {
				t.Fatal("redirect followed")
			}
			mustGet(t, c, s.URL+"/echo", "GET  ")
			wantConns(t, s, 1)
		}},
		{"ok/connection-close-answer-then-new-connection", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			mustGet(t, c, s.URL+"/close", "bye")
			if tr.idleCount() != 0 {
				t.Fatal("connection the server closes kept in the pool")
			}
			mustGet(t, c, s.URL+"/echo", "GET  ")
			wantConns(t, s, 2)
		}},
		{"ok/server-closed-idle-connection-get-sent-again", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			mustGet(t, c, s.URL+"/echo", "GET  ")
			s.CloseClientConnections()
			mustGet(t, c, s.URL+"/echo?again", "GET again ")
			wantConns(t, s, 2)
		}},
		{"ok/server-closed-many-idle-connections-one-new-dial", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			var wg sync.WaitGroup
			var bodies [3]*http.Response
			for i := range bodies { // three connections at once, all idle after
				resp, err := c.Get(s.URL + "/echo")
				if err != nil {
					t.Fatal(err)
				}
				bodies[i] = resp
			}
			for _, resp := range bodies {
				wg.Go(func() { io.Copy(io.Discard, resp.Body); resp.Body.Close() })
			}
			wg.Wait()
			if tr.idleCount() != 3 || s.conns.Load() != 3 {
				t.Fatalf("%d idle, %d made; want 3, 3", tr.idleCount(), s.conns.Load())
			}
			s.CloseClientConnections()
			mustGet(t, c, s.URL+"/echo", "GET  ")
			wantConns(t, s, 4)
		}},
		{"ok/long-idle-connection-not-reused", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			mustGet(t, c, s.URL+"/echo", "GET  ")
			tr.mu.Lock()
			for _, pool := range tr.idle {
				pool[0].idleAt = pool[0].idleAt.Add(-maxIdleAge)
			}
			tr.mu.Unlock()
			resp, err := c.Post(s.URL+"/echo", "text/plain", strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			wantConns(t, s, 2)
		}},
		{"ok/close-unread-small-body-keeps-connection", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			resp, err := c.Get(s.URL + "/echo")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			resp.Body.Close() // idempotent
			if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
				t.Fatal("read after close succeeded")
			}
			mustGet(t, c, s.URL+"/echo", "GET  ")
			wantConns(t, s, 1)
		}},
		{"ok/read-after-eof-leaves-reused-connection-alone", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			resp, err := c.Get(s.URL + "/echo?first")
			if err != nil {
				t.Fatal(err)
			}
			io.ReadAll(resp.Body) // EOF: the connection is back in the pool
			mustGet(t, c, s.URL+"/echo?second", "GET second ")
			if n, err := resp.Body.Read(make([]byte, 8)); n != 0 || err != io.EOF {
				t.Fatalf("read after EOF = %d, %v", n, err)
			}
			resp.Body.Close()
			mustGet(t, c, s.URL+"/echo?third", "GET third ")
			wantConns(t, s, 1)
		}},
		{"fail/close-unread-large-body-drops-connection", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			resp, err := c.Get(s.URL + "/large")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Read(make([]byte, 1))
			within(t, 2*time.Second, func() { resp.Body.Close() })
			if tr.idleCount() != 0 {
				t.Fatal("half-read connection kept in the pool")
			}
			mustGet(t, c, s.URL+"/echo", "GET  ")
			wantConns(t, s, 2)
		}},
		{"fail/close-unfinished-stream-does-not-wait", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			resp, err := c.Get(s.URL + "/hang?partial")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Read(make([]byte, 64))
			within(t, 2*time.Second, func() { resp.Body.Close() })
			if tr.idleCount() != 0 {
				t.Fatal("unfinished stream's connection kept in the pool")
			}
		}},
		{"fail/close-during-blocked-read-ends-it", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			resp, err := c.Get(s.URL + "/stream")
			if err != nil {
				t.Fatal(err)
			}
			readErr := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.Discard, resp.Body)
				readErr <- err
			}()
			time.Sleep(30 * time.Millisecond)
			within(t, 2*time.Second, func() { resp.Body.Close() })
			select {
			case err := <-readErr:
				if err == nil {
					t.Fatal("read of a closed stream ended cleanly")
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Close did not end the blocked Read")
			}
			if tr.idleCount() != 0 {
				t.Fatal("stream connection kept in the pool")
			}
		}},
		{"fail/context-cancelled-mid-body", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/hang?partial", nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			if n, err := resp.Body.Read(buf); err != nil || string(buf[:n]) != "data: first\n\n" {
				t.Fatalf("first read %q, %v", buf[:n], err)
			}
			time.AfterFunc(20*time.Millisecond, cancel)
			within(t, 2*time.Second, func() {
				if _, err = io.ReadAll(resp.Body); !errors.Is(err, context.Canceled) {
					t.Errorf("read after cancel: %v, want context.Canceled", err)
				}
			})
			resp.Body.Close()
			if tr.idleCount() != 0 {
				t.Fatal("cancelled connection kept in the pool")
			}
			mustGet(t, c, s.URL+"/echo", "GET  ")
			wantConns(t, s, 2)
		}},
		{"fail/context-cancelled-awaiting-headers", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			within(t, 2*time.Second, func() {
				if _, _, err := get(ctx, c, s.URL+"/hang"); !errors.Is(err, context.DeadlineExceeded) || errKind(err) != "timeout" {
					t.Errorf("GET /hang: %v (kind %s), want a deadline", err, errKind(err))
				}
			})
			if tr.idleCount() != 0 || s.hitsOf("GET /hang") != 1 {
				t.Fatalf("%d idle, %d requests; want 0, 1", tr.idleCount(), s.hitsOf("GET /hang"))
			}
		}},
		{"fail/client-timeout-mid-body", func(t *testing.T, s *transportServer, tr *syncTransport, _ *http.Client) {
			c := &http.Client{Transport: tr, Timeout: 100 * time.Millisecond}
			resp, err := c.Get(s.URL + "/hang?partial")
			if err != nil {
				t.Fatal(err)
			}
			readTimesOut(t, tr, resp)
		}},
		{"fail/transport-timeout-awaiting-headers", func(t *testing.T, s *transportServer, _ *syncTransport, _ *http.Client) {
			tr := newSyncTransport(16, 100*time.Millisecond)
			c := &http.Client{Transport: tr} // no Client.Timeout: the transport's bounds the round trip
			// The context is only a backstop (a broken transport fails within's
			// 2 s first, then lets the server close).
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			within(t, 2*time.Second, func() {
				if _, _, err := get(ctx, c, s.URL+"/hang"); errKind(err) != "timeout" {
					t.Errorf("GET /hang: %v (kind %s), want a timeout", err, errKind(err))
				}
			})
			if tr.idleCount() != 0 {
				t.Fatal("timed-out connection kept in the pool")
			}
		}},
		{"fail/transport-timeout-mid-body", func(t *testing.T, s *transportServer, _ *syncTransport, _ *http.Client) {
			tr := newSyncTransport(16, 100*time.Millisecond)
			c := &http.Client{Transport: tr}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // backstop, as above
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/hang?partial", nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			readTimesOut(t, tr, resp)
		}},
		{"ok/transport-timeout-is-per-round-trip", func(t *testing.T, s *transportServer, _ *syncTransport, _ *http.Client) {
			tr := newSyncTransport(16, 150*time.Millisecond)
			c := &http.Client{Transport: tr}
			for i := range 4 { // 4 × 60 ms on one connection: longer than one timeout in all
				mustGet(t, c, s.URL+"/echo?"+strconv.Itoa(i), "GET "+strconv.Itoa(i)+" ")
				time.Sleep(60 * time.Millisecond)
			}
			wantConns(t, s, 1)
		}},
		{"fail/post-on-server-closed-connection-not-sent-again", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			mustGet(t, c, s.URL+"/echo", "GET  ")
			s.CloseClientConnections()
			time.Sleep(20 * time.Millisecond) // the FIN arrives
			resp, err := c.Post(s.URL+"/echo", "text/plain", strings.NewReader("once"))
			if err == nil {
				resp.Body.Close()
				t.Fatal("POST on a connection the server closed succeeded")
			}
			if n := s.hitsOf("POST /echo"); n != 0 {
				t.Fatalf("POST reached the server %d times", n)
			}
		}},
		{"fail/not-http", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			for _, u := range []string{strings.Replace(s.URL, "http:", "https:", 1), "ftp://127.0.0.1/x"} {
				req, _ := http.NewRequest(http.MethodGet, u+"/echo", nil)
				if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "only http://") {
					t.Fatalf("%s: %v, want the transport to refuse it", u, err)
				}
			}
			wantConns(t, s, 0)
		}},
		{"fail/not-loopback", func(t *testing.T, s *transportServer, tr *syncTransport, c *http.Client) {
			if _, _, err := get(context.Background(), c, "http://192.0.2.1:80/"); !errors.Is(err, ErrNotLoopback) {
				t.Fatalf("GET a non-loopback host: %v, want ErrNotLoopback", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTransportServer(t)
			tr := newSyncTransport(16, 0)
			t.Cleanup(tr.CloseIdleConnections)
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			tc.run(t, s, tr, c)
		})
	}
}

func TestSyncTransportCloseIdleConnections(t *testing.T) {
	s := newTransportServer(t)
	tr := newSyncTransport(16, 0)
	c := &http.Client{Transport: tr}
	mustGet(t, c, s.URL+"/echo", "GET  ")
	c.CloseIdleConnections()
	if tr.idleCount() != 0 {
		t.Fatalf("%d idle after CloseIdleConnections", tr.idleCount())
	}
	mustGet(t, c, s.URL+"/echo", "GET  ")
	wantConns(t, s, 2)
}
