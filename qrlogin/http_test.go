package qrlogin_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	gzqr "github.com/makiuchi-d/gozxing/qrcode"
	"github.com/ory/fosite"

	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/storage"
	"github.com/essc-project/essc/storage/memory"
)

func TestBrowserHTTP(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) { runBrowserHTTP(t, open) })
	}
}

// do sends one request from b and returns status, headers and body.
func (b *browser) do(method, path string) (int, http.Header, string) {
	r, _ := http.NewRequest(method, b.e.srv.URL+qrlogin.Base+b.txn+path, nil)
	if method == http.MethodPost {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(r)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

func runBrowserHTTP(t *testing.T, open opener) {
	ctx := context.Background()

	t.Run("fail/every-endpoint-without-binding-cookie", func(t *testing.T) {
		e := newEnv(t, open)
		victim := e.browser(t)
		victim.open("")
		attacker := e.browser(t)
		attacker.txn = victim.txn
		for _, c := range []struct{ method, path string }{
			{"GET", ""}, {"GET", "?wait=1"}, {"GET", "/events"}, {"GET", "/frame"}, {"GET", "/frame.png"}, {"GET", "/page"},
			{"POST", "/elderly"}, {"POST", "/complete"}, {"POST", "/cancel"}, {"POST", "/restart"},
		} {
			code, _, body := attacker.do(c.method, c.path)
			if code != http.StatusNotFound {
				t.Errorf("%s %s without cookie: %d %s", c.method, c.path, code, body)
			}
			if strings.Contains(body, "pending") || strings.Contains(body, "data:image") {
				t.Errorf("%s %s leaks the transaction: %s", c.method, c.path, body)
			}
		}
		if st, _ := victim.state(); st != "pending" {
			t.Fatalf("attacker's requests changed the victim's transaction: %s", st)
		}
	})

	t.Run("ok/page-headers-and-no-pii", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		code, hdr, body := b.do("GET", "/page")
		if code != 200 {
			t.Fatalf("page: %d", code)
		}
		csp := hdr.Get("Content-Security-Policy")
		for _, want := range []string{"frame-ancestors 'none'", "default-src 'none'", "script-src 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("CSP %q lacks %s", csp, want)
			}
		}
		if hdr.Get("X-Frame-Options") != "DENY" || hdr.Get("Referrer-Policy") != "no-referrer" || hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("headers %v", hdr)
		}
		for _, want := range []string{`lang="zh-CN"`, "省网上服务大厅", "portal.example.gov.cn", `alt="登录二维码`, `href="essc://login?v=1&amp;t=` + b.txn, `data-payload="essc://login?v=1&amp;t=` + b.txn, `<noscript><img src="/qr/v1/transactions/` + b.txn + `/frame.png"`, `src="/qr/v1/static/qrcode.js"`} {
			if !strings.Contains(body, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		for _, bad := range []string{"http://", "https://", "//cdn"} {
			if strings.Contains(body, bad) {
				t.Errorf("page references an external asset (%s)", bad)
			}
		}
		dev := qrlogin.Device{HolderID: "HOLDER-440301-SECRET", ECardID: "ECARD-SECRET", DeviceID: "DEVICE-SECRET"}
		if _, err := e.svc.Scan(ctx, dev, b.payload()); err != nil {
			t.Fatal(err)
		}
		_, _, page := b.do("GET", "/page")
		_, _, status := b.do("GET", "")
		for _, out := range []string{page, status} {
			if strings.Contains(out, "SECRET") {
				t.Fatalf("browser sees holder data: %s", out)
			}
		}
		if !strings.Contains(page, `id="number">`) || !strings.Contains(status, `"number":`) {
			t.Fatalf("scanned page/status without the number: %s %s", page, status)
		}
	})

	t.Run("ok/static-assets", func(t *testing.T) {
		e := newEnv(t, open)
		for _, p := range []string{"/qr/v1/static/login.js", "/qr/v1/static/login.css"} {
			resp, err := http.Get(e.srv.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s: %d %v", p, resp.StatusCode, resp.Header)
			}
		}
		resp, _ := http.Get(e.srv.URL + "/qr/v1/static/../web/login.html")
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("fail/static path escape served a template")
		}
	})

	t.Run("ok/frame-png-decodes-to-the-payload", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		code, hdr, body := b.do("GET", "/frame.png")
		if code != 200 || hdr.Get("Content-Type") != "image/png" {
			t.Fatalf("frame.png: %d %v", code, hdr)
		}
		got := decodeQR(t, []byte(body))
		f, err := qrlogin.ParsePayload(got)
		if err != nil || f.Txn != b.txn {
			t.Fatalf("decoded %q: %v", got, err)
		}
		if _, err := e.svc.Scan(ctx, phone, got); err != nil {
			t.Fatalf("scan of the decoded image: %v", err)
		}
		if code, _, _ := b.do("GET", "/frame.png"); code != http.StatusConflict {
			t.Fatalf("fail/frame.png after scan: %d", code)
		}
		var s struct{ State, Error string }
		if code := b.getJSON("/frame", &s); code != http.StatusConflict || s.State != "scanned" {
			t.Fatalf("fail/frame after scan: %d %+v", code, s)
		}
	})

	t.Run("ok/frame-svg-decodes-to-the-payload", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		var f struct{ Payload, Image string }
		if code := b.getJSON("/frame", &f); code != 200 || f.Image != "" || !strings.HasPrefix(f.Payload, "essc://login?v=1&t="+b.txn) {
			t.Fatalf("frame (the page draws it): %d %+v", code, f)
		}
		if code := b.getJSON("/frame?image=svg", &f); code != 200 {
			t.Fatalf("frame?image=svg: %d", code)
		}
		b64, ok := strings.CutPrefix(f.Image, "data:image/svg+xml;base64,")
		if !ok {
			t.Fatalf("image %.40s", f.Image)
		}
		svg, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeQRImage(t, rasterSVG(t, string(svg), 6)); got != f.Payload {
			t.Fatalf("SVG decodes to %q, payload %q", got, f.Payload)
		}
	})

	t.Run("ok/frames-change-every-second", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		p1 := b.payload()
		e.clock.Advance(time.Second)
		p2 := b.payload()
		if p1 == p2 {
			t.Fatal("frame did not change after 1 s")
		}
		var f struct {
			NextMS int64 `json:"next_ms"`
		}
		b.getJSON("/frame", &f)
		if f.NextMS <= 0 || f.NextMS > 1000 {
			t.Fatalf("next_ms %d", f.NextMS)
		}
	})

	t.Run("ok/frames-come-five-at-a-time", func(t *testing.T) {
		// One frame request carries the next UpcomingFrames frames with the
		// time each is due; a scan refuses an upcoming frame before it is
		// due (beyond the clock skew) and accepts it when it is.
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		var f struct {
			Payload  string `json:"payload"`
			NextMS   int64  `json:"next_ms"`
			Upcoming []struct {
				Payload string `json:"payload"`
				AtMS    int64  `json:"at_ms"`
			} `json:"upcoming"`
			RefreshMS int64 `json:"refresh_ms"`
		}
		if code := b.getJSON("/frame", &f); code != 200 || len(f.Upcoming) != qrlogin.UpcomingFrames {
			t.Fatalf("frame: %d, %d upcoming, want %d", code, len(f.Upcoming), qrlogin.UpcomingFrames)
		}
		cur, err := qrlogin.ParsePayload(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		for i, u := range f.Upcoming {
			p, err := qrlogin.ParsePayload(u.Payload)
			if err != nil || p.Txn != b.txn || p.Elapsed != cur.Elapsed+i+1 {
				t.Fatalf("upcoming %d: %+v %v (current e=%d)", i, p, err, cur.Elapsed)
			}
			if want := f.NextMS + int64(i)*1000; u.AtMS != want {
				t.Fatalf("upcoming %d due at %d ms, want %d", i, u.AtMS, want)
			}
		}
		if want := f.NextMS + int64(qrlogin.UpcomingFrames)*1000; f.RefreshMS != want {
			t.Fatalf("refresh_ms %d, want %d", f.RefreshMS, want)
		}
		ctx := context.Background()
		phone := qrlogin.Device{HolderID: "h-up", ECardID: "e-up", DeviceID: "d-up"}
		last := f.Upcoming[len(f.Upcoming)-1]
		if _, err := e.svc.Scan(ctx, phone, last.Payload); err == nil {
			t.Fatal("a frame due in 4 s was accepted now")
		}
		e.clock.Advance(time.Duration(last.AtMS) * time.Millisecond)
		if _, err := e.svc.Scan(ctx, phone, last.Payload); err != nil {
			t.Fatalf("the frame when due: %v", err)
		}
	})

	t.Run("ok/page-carries-the-first-frames", func(t *testing.T) {
		// The page itself carries the current frame and the next
		// UpcomingFrames with their due times (what a /frame request at the
		// same instant answers), so a scan in the first seconds needs no
		// /frame request.
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		code, _, body := b.do("GET", "/page")
		if code != 200 {
			t.Fatalf("page: %d", code)
		}
		attr := func(name string) string {
			i := strings.Index(body, " "+name+`="`)
			if i < 0 {
				t.Fatalf("page lacks %s", name)
			}
			rest := body[i+len(name)+3:]
			return html.UnescapeString(rest[:strings.IndexByte(rest, '"')])
		}
		type upcoming []struct {
			Payload string `json:"payload"`
			AtMS    int64  `json:"at_ms"`
		}
		var onPage upcoming
		if err := json.Unmarshal([]byte(attr("data-upcoming")), &onPage); err != nil || len(onPage) != qrlogin.UpcomingFrames {
			t.Fatalf("data-upcoming: %d frames, %v", len(onPage), err)
		}
		var f struct {
			Payload   string   `json:"payload"`
			Upcoming  upcoming `json:"upcoming"`
			RefreshMS int64    `json:"refresh_ms"`
		}
		if code := b.getJSON("/frame", &f); code != 200 {
			t.Fatalf("frame: %d", code)
		}
		if attr("data-payload") != f.Payload || !reflect.DeepEqual(onPage, f.Upcoming) || attr("data-refresh-ms") != strconv.FormatInt(f.RefreshMS, 10) {
			t.Fatalf("page frames %q %+v refresh %s, /frame %q %+v refresh %d",
				attr("data-payload"), onPage, attr("data-refresh-ms"), f.Payload, f.Upcoming, f.RefreshMS)
		}
		// After a scan the page carries no frames.
		if _, err := e.svc.Scan(context.Background(), qrlogin.Device{HolderID: "h-p", ECardID: "e-p", DeviceID: "d-p"}, f.Payload); err != nil {
			t.Fatal(err)
		}
		if _, _, body := b.do("GET", "/page"); strings.Contains(body, "data-payload") || !strings.Contains(body, `data-upcoming=""`) {
			t.Fatalf("scanned page still carries frames")
		}
	})

	t.Run("fail/poll-faster-than-interval-slow-down", func(t *testing.T) {
		lim := generous
		lim.PollsPerTxn = 2
		e := newEnvLimits(t, open, lim)
		b := e.browser(t)
		b.open("")
		var s struct {
			State, Error string
			Interval     int
		}
		for range 2 {
			if code := b.getJSON("", &s); code != 200 || s.Error != "authorization_pending" || s.Interval != 2 {
				t.Fatalf("poll: %d %+v", code, s)
			}
		}
		if code := b.getJSON("", &s); code != http.StatusBadRequest || s.Error != "slow_down" || s.Interval <= 2 {
			t.Fatalf("third poll within the interval: %d %+v", code, s)
		}
		e.clock.Advance(qrlogin.PollInterval)
		if code := b.getJSON("", &s); code != 200 {
			t.Fatalf("poll after the interval: %d %+v", code, s)
		}
	})

	t.Run("ok/per-transaction-limits-counted-per-replica", func(t *testing.T) {
		lim := generous
		lim.PollsPerTxn, lim.FramesPerTxn = 2, 2
		e := newEnv(t, open)
		shared := &rateSpy{Sessions: e.store}
		local := func() *rateSpy {
			m, err := memory.New(memory.Config{Now: e.clock.Now, Lookup: func(context.Context, string) (fosite.Client, error) { return nil, nil },
				NewSession: func() fosite.Session { return nil }})
			if err != nil {
				t.Fatal(err)
			}
			return &rateSpy{Sessions: m}
		}
		localA, localB := local(), local()
		_, srvA := e.serverLocal(t, shared, lim, localA)
		_, srvB := e.serverLocal(t, shared, lim, localB)
		e.srv = srvA
		b := e.browser(t)
		b.open("")
		var s struct{ Error string }
		for i := range 3 {
			code := b.getJSON("", &s)
			if want := map[bool]int{true: 200, false: http.StatusBadRequest}[i < 2]; code != want {
				t.Fatalf("poll %d on replica A: %d %+v", i+1, code, s)
			}
			if code := b.getJSON("/frame", &s); code != map[bool]int{true: 200, false: http.StatusTooManyRequests}[i < 2] {
				t.Fatalf("frame %d on replica A: %d", i+1, code)
			}
		}
		e.srv = srvB // replica B counts its own polls and frames
		if code := b.getJSON("", &s); code != 200 {
			t.Fatalf("poll on replica B: %d %+v", code, s)
		}
		if code := b.getJSON("/frame", &s); code != 200 {
			t.Fatalf("frame on replica B: %d", code)
		}
		for name, spy := range map[string]*rateSpy{"shared store": shared, "replica A": localA, "replica B": localB} {
			got := strings.Join(spy.keys(), " ")
			perTxn := strings.Contains(got, "qr:poll:") && strings.Contains(got, "qr:frame:")
			if perTxn != (name != "shared store") || strings.Contains(got, "qr:begin:") != (name == "shared store") {
				t.Errorf("%s counted %q", name, got)
			}
		}
	})

	t.Run("fail/frames-per-transaction-limited", func(t *testing.T) {
		lim := generous
		lim.FramesPerTxn = 3
		e := newEnvLimits(t, open, lim)
		b := e.browser(t)
		b.open("")
		codes := map[int]int{}
		for range 5 {
			var s struct{}
			codes[b.getJSON("/frame", &s)]++
		}
		if codes[http.StatusTooManyRequests] == 0 {
			t.Fatalf("frames never limited: %v", codes)
		}
	})

	t.Run("fail/event-streams-per-transaction-limited", func(t *testing.T) {
		lim := generous
		lim.StreamsPerTxn = 2
		e := newEnvLimits(t, open, lim)
		b := e.browser(t)
		b.open("")
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		codes := map[int]int{}
		for range 3 {
			r, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+qrlogin.Base+b.txn+"/events", nil)
			resp, err := b.c.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			codes[resp.StatusCode]++
			if resp.StatusCode != 200 {
				resp.Body.Close()
			}
		}
		if codes[200] != 2 || codes[http.StatusTooManyRequests] != 1 {
			t.Fatalf("streams: %v", codes)
		}
	})

	t.Run("fail/transactions-per-ip-limited", func(t *testing.T) {
		lim := generous
		lim.TxnPerIP = 2
		e := newEnvLimits(t, open, lim)
		b := e.browser(t)
		b.open("")
		b.open("")
		resp, err := b.c.Get(e.srv.URL + "/authorize")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "操作过于频繁") {
			t.Fatalf("third transaction from one IP: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("fail/scans-per-device-limited", func(t *testing.T) {
		lim := generous
		lim.ScansPerDevice = 3
		e := newEnvLimits(t, open, lim)
		var last error
		for range 4 {
			_, last = e.svc.Scan(ctx, phone, "essc://login?v=1&t=AAAAAAAAAAAAAAAAAAAAAA&e=0&c=AAAAAAAAAAAAAAAAAAAAAA")
		}
		if !errors.Is(last, qrlogin.ErrRateLimited) {
			t.Fatalf("fourth scan: %v", last)
		}
		if _, err := e.svc.ResolveCode(ctx, phone, "ABCDEFGH"); !errors.Is(err, qrlogin.ErrRateLimited) {
			t.Fatalf("typed codes share the device limit: %v", err)
		}
	})

	t.Run("ok/long-poll-wakes-on-scan", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		p := b.payload()
		go func() {
			time.Sleep(100 * time.Millisecond)
			e.svc.Scan(ctx, phone, p)
		}()
		start := time.Now()
		var s struct {
			State  string
			Number int
		}
		if code := b.getJSON("?wait=10", &s); code != 200 || s.State != "scanned" || s.Number == 0 {
			t.Fatalf("long poll: %d %+v", code, s)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("long poll returned after %v, not on the wake-up", d)
		}
	})

	t.Run("ok/long-poll-sees-a-scan-right-after-its-read", func(t *testing.T) {
		// The phone scans just after the long poll read the transaction and
		// before it starts waiting: the poll must answer on the wake-up (it
		// subscribed before reading), not after its ten seconds.
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		p := b.payload()
		rs := &scanAfterRead{Sessions: e.store, txn: b.txn}
		rs.hook = func() {
			if _, err := e.svc.Scan(ctx, phone, p); err != nil {
				t.Error(err)
			}
		}
		_, srvB := e.server(t, rs, generous)
		start := time.Now()
		resp, err := b.c.Get(srvB.URL + qrlogin.Base + b.txn + "?wait=10")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), `"state":"scanned"`) || time.Since(start) > 5*time.Second {
			t.Fatalf("long poll after %v: %d %s", time.Since(start), resp.StatusCode, body)
		}
	})

	t.Run("ok/browser-on-another-replica-sees-the-phone", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("") // served by replica A
		p := b.payload()
		_, srvB := e.server(t, e.replica(t), generous)
		resp, err := b.c.Get(srvB.URL + qrlogin.Base + b.txn + "/events") // cookies ignore ports: same browser
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("events on replica B: %d", resp.StatusCode)
		}
		go func() {
			time.Sleep(100 * time.Millisecond)
			e.svc.Scan(ctx, phone, p) // the phone reaches replica A
		}()
		readUntil(t, resp.Body, `"state":"scanned"`)
	})

	t.Run("ok/sse-ends-on-final-state", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		resp, err := b.c.Get(e.srv.URL + qrlogin.Base + b.txn + "/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("content type %s", ct)
		}
		go func() {
			time.Sleep(50 * time.Millisecond)
			e.svc.Cancel(ctx, b.txn, bindingOf(t, b))
		}()
		got := readUntil(t, resp.Body, `"state":"cancelled"`)
		if !strings.Contains(got, `"error":"access_denied"`) {
			t.Fatalf("cancelled event: %s", got)
		}
		rest, _ := io.ReadAll(resp.Body) // the server closes the stream
		if strings.Contains(string(rest), "event:") {
			t.Fatalf("events after the final state: %s", rest)
		}
	})

	t.Run("ok/cancel-then-restart", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		old := b.txn
		if code, _, _ := b.do("POST", "/restart"); code != http.StatusConflict {
			t.Fatalf("fail/restart while pending: %d", code)
		}
		if code, hdr, _ := b.do("POST", "/cancel"); code != http.StatusSeeOther || !strings.HasSuffix(hdr.Get("Location"), "/page") {
			t.Fatalf("cancel: %d", code)
		}
		if _, err := e.svc.Scan(ctx, phone, payloadFor(t, e, b)); err == nil {
			t.Fatal("fail/scanned a cancelled transaction")
		}
		var s struct{ State, Error string }
		if b.getJSON("", &s); s.State != "cancelled" || s.Error != "access_denied" {
			t.Fatalf("cancelled status %+v", s)
		}
		code, hdr, _ := b.do("POST", "/restart")
		if code != http.StatusSeeOther {
			t.Fatalf("restart: %d", code)
		}
		loc := hdr.Get("Location")
		b.txn = strings.TrimSuffix(strings.TrimPrefix(loc, qrlogin.Base), "/page")
		if b.txn == old {
			t.Fatal("restart reused the transaction id")
		}
		if st, _ := b.state(); st != "pending" {
			t.Fatalf("restarted transaction: %s", st)
		}
		if _, err := e.svc.Scan(ctx, phone, b.payload()); err != nil {
			t.Fatal(err)
		}
		// The old transaction's cookie was cleared.
		u, _ := url.Parse(e.srv.URL + qrlogin.Base + old)
		if len(b.c.Jar.Cookies(u)) != 0 {
			t.Fatal("old binding cookie kept")
		}
	})

	t.Run("ok/expired-page-offers-retry", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		e.clock.Advance(121 * time.Second)
		if _, err := e.svc.Scan(ctx, phone, payloadFor(t, e, b)); !errors.Is(err, qrlogin.ErrNotFound) && !errors.Is(err, qrlogin.ErrFrameExpired) {
			t.Fatalf("scan after expiry: %v", err)
		}
		page := b.page()
		if !strings.Contains(page, "二维码已过期") || strings.Contains(page, `id="restart" hidden`) {
			t.Fatalf("expired page: %s", page)
		}
		if code, _, _ := b.do("POST", "/restart"); code != http.StatusSeeOther {
			t.Fatalf("retry after expiry: %d", code)
		}
	})

	t.Run("ok/holder-denies", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		e.svc.Scan(ctx, phone, b.payload())
		other := qrlogin.Device{HolderID: "h2", ECardID: "e2", DeviceID: "d2"}
		if err := e.svc.Deny(ctx, other, b.txn); !errors.Is(err, qrlogin.ErrNotScanner) {
			t.Fatalf("deny by another phone: %v", err)
		}
		if err := e.svc.Deny(ctx, phone, b.txn); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Deny(ctx, phone, b.txn); !errors.Is(err, qrlogin.ErrFinished) {
			t.Fatalf("replayed deny: %v", err)
		}
		if st, reason := b.denial(); st != "denied" || reason != qrlogin.ReasonHolder {
			t.Fatalf("browser: %s %s", st, reason)
		}
	})

	t.Run("ok/elderly-over-http", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		code, hdr, _ := b.do("POST", "/elderly")
		if code != http.StatusSeeOther || !strings.HasSuffix(hdr.Get("Location"), "/page") {
			t.Fatalf("elderly: %d", code)
		}
		page := b.page()
		if !strings.Contains(page, `width="560"`) || !strings.Contains(page, `id="code"`) || !strings.Contains(page, "每5秒") {
			t.Fatalf("elderly page: %s", page)
		}
		var f struct {
			NextMS  int64 `json:"next_ms"`
			Elderly bool
		}
		b.getJSON("/frame", &f)
		if !f.Elderly || f.NextMS <= 1000 {
			t.Fatalf("elderly frame %+v", f)
		}
		// Switching twice keeps the first code.
		v1, _ := e.svc.BrowserView(ctx, b.txn, bindingOf(t, b))
		b.do("POST", "/elderly")
		v2, _ := e.svc.BrowserView(ctx, b.txn, bindingOf(t, b))
		if v1.Code == "" || v1.Code != v2.Code {
			t.Fatalf("codes %q %q", v1.Code, v2.Code)
		}
		if _, err := e.svc.ResolveCode(ctx, phone, "SHORT"); !errors.Is(err, qrlogin.ErrBadCode) {
			t.Fatalf("short code: %v", err)
		}
		if _, err := e.svc.ResolveCode(ctx, phone, "ZZZZZZZZ"); !errors.Is(err, qrlogin.ErrBadCode) {
			t.Fatalf("unknown code: %v", err)
		}
	})

	t.Run("ok/every-transition-audited", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		e.svc.Scan(ctx, phone, b.payload())
		_, n := b.state()
		if err := e.svc.Confirm(ctx, phone, b.txn, n, pin()); err != nil {
			t.Fatal(err)
		}
		b.complete()
		got := strings.Join(e.obs.of(b.txn), ",")
		if want := ">pending,pending>scanned,scanned>approved,approved>consumed"; got != want {
			t.Fatalf("audit %q, want %q", got, want)
		}
		b2 := e.browser(t)
		b2.open("")
		view, _ := e.svc.Scan(ctx, phone, b2.payload())
		_, n = b2.state()
		wrong := view.Candidates[0]
		if wrong == n {
			wrong = view.Candidates[1]
		}
		e.svc.Confirm(ctx, phone, b2.txn, wrong, pin())
		if got := strings.Join(e.obs.of(b2.txn), ","); got != ">pending,pending>scanned,scanned>denied wrong_number" {
			t.Fatalf("audit of a wrong pick %q", got)
		}
	})

	t.Run("fail/confirm-after-expiry", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		e.svc.Scan(ctx, phone, b.payload())
		_, n := b.state()
		e.clock.Advance(121 * time.Second)
		if err := e.svc.Confirm(ctx, phone, b.txn, n, pin()); !errors.Is(err, qrlogin.ErrNotFound) {
			t.Fatalf("confirm after expiry: %v", err)
		}
	})

	t.Run("fail/frame-for-another-relying-party", func(t *testing.T) {
		// Two services with different frame keys stand for a frame minted
		// elsewhere: its MAC does not verify here.
		e := newEnv(t, open)
		b := e.browser(t)
		b.open("")
		f, _ := qrlogin.ParsePayload(b.payload())
		f.MAC[0] ^= 1
		if _, err := e.svc.Scan(ctx, phone, f.String()); !errors.Is(err, qrlogin.ErrFrameInvalid) {
			t.Fatalf("tampered MAC: %v", err)
		}
		if _, err := e.svc.Scan(ctx, phone, "https://evil.example/login?t="+b.txn); !errors.Is(err, qrlogin.ErrBadPayload) {
			t.Fatalf("foreign payload: %v", err)
		}
	})

	t.Run("fail/storage-down-fixed-message", func(t *testing.T) {
		e := newEnv(t, open)
		svc, err := qrlogin.New(qrlogin.Config{Store: downStore{e.store}, Holders: e.h, Completer: e.c, FrameKey: frameKey, Now: e.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		svc.Handler().Mount(mux)
		rec := &recorder{header: http.Header{}}
		r, _ := http.NewRequest("GET", qrlogin.Base+"AAAAAAAAAAAAAAAAAAAAAA", nil)
		r.RemoteAddr = "192.0.2.1:1"
		mux.ServeHTTP(rec, r)
		if rec.code != http.StatusServiceUnavailable || strings.Contains(rec.body.String(), "redis") || !strings.Contains(rec.body.String(), "temporarily_unavailable") {
			t.Fatalf("storage down: %d %s", rec.code, rec.body.String())
		}
		r, _ = http.NewRequest("POST", qrlogin.Base+"AAAAAAAAAAAAAAAAAAAAAA/complete", nil)
		r.RemoteAddr = "192.0.2.1:1"
		rec = &recorder{header: http.Header{}}
		mux.ServeHTTP(rec, r)
		if rec.code != http.StatusServiceUnavailable || strings.Contains(rec.body.String(), "redis") || !strings.Contains(rec.body.String(), "服务暂时不可用") {
			t.Fatalf("storage down (page): %d %s", rec.code, rec.body.String())
		}
	})
}

// downStore fails every read like an unreachable Redis would.
type downStore struct{ storage.Sessions }

func (downStore) GetQR(context.Context, string) (storage.QRTransaction, error) {
	return storage.QRTransaction{}, fmt.Errorf("%w: dial tcp redis:6379: connection refused", storage.ErrUnavailable)
}

func (downStore) Allow(context.Context, string, int, time.Duration) (storage.RateDecision, error) {
	return storage.RateDecision{}, fmt.Errorf("%w: dial tcp redis:6379: connection refused", storage.ErrUnavailable)
}

type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(c int)           { r.code = c }

// payloadFor mints what a camera would have read from b's page just now
// (for transactions whose frame endpoint no longer answers).
func payloadFor(t *testing.T, e *env, b *browser) string {
	v, err := e.svc.BrowserView(context.Background(), b.txn, bindingOf(t, b))
	if err != nil {
		return "essc://login?v=1&t=" + b.txn + "&e=0&c=AAAAAAAAAAAAAAAAAAAAAA"
	}
	return e.svc.CurrentFrame(v).String()
}

func readUntil(t *testing.T, r io.Reader, want string) string {
	t.Helper()
	buf := make([]byte, 4096)
	var got strings.Builder
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(got.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in: %s", want, got.String())
		}
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err != nil && !strings.Contains(got.String(), want) {
			t.Fatalf("stream ended: %v %s", err, got.String())
		}
	}
	return got.String()
}

// decodeQR reads a QR code from a PNG like a phone camera would.
func decodeQR(t *testing.T, b []byte) string {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	// go-qrcode draws 2 px per module; scale ×4 as the page does.
	big := image.NewGray(image.Rect(0, 0, img.Bounds().Dx()*4, img.Bounds().Dy()*4))
	for y := range big.Bounds().Dy() {
		for x := range big.Bounds().Dx() {
			big.Set(x, y, img.At(x/4, y/4))
		}
	}
	return decodeQRImage(t, big)
}

// rasterSVG paints QRSVG's output (a white rect, then one path of
// "M x yhNv1h-Nz" runs) at scale pixels per module.
func rasterSVG(t *testing.T, svg string, scale int) image.Image {
	t.Helper()
	m := regexp.MustCompile(`viewBox="0 0 (\d+) (\d+)"`).FindStringSubmatch(svg)
	if m == nil {
		t.Fatalf("no viewBox: %.100s", svg)
	}
	n, _ := strconv.Atoi(m[1])
	img := image.NewGray(image.Rect(0, 0, n*scale, n*scale))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	runs := regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-(\d+)z`).FindAllStringSubmatch(svg, -1)
	if len(runs) == 0 {
		t.Fatalf("no modules: %.200s", svg)
	}
	for _, r := range runs {
		x, _ := strconv.Atoi(r[1])
		y, _ := strconv.Atoi(r[2])
		w, _ := strconv.Atoi(r[3])
		for py := y * scale; py < (y+1)*scale; py++ {
			for px := x * scale; px < (x+w)*scale; px++ {
				img.Pix[py*img.Stride+px] = 0
			}
		}
	}
	return img
}

func decodeQRImage(t *testing.T, img image.Image) string {
	t.Helper()
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := gzqr.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		// gozxing's finder-pattern detector misses about 1 in 100 of these
		// synthetic, perfectly sharp symbols at 3 px per module and more
		// (none of 1,000 at 2 px), so a miss falls back to reading the
		// modules of the whole image directly (it reads the same modules and
		// error correction; only the locating differs).
		t.Logf("detector: %v; reading the image as a pure barcode", err)
		res, err = gzqr.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	}
	if err != nil {
		t.Fatalf("QR not readable: %v", err)
	}
	return res.GetText()
}

// scanAfterRead is a session store whose first read of txn runs hook (a
// scan) after reading: the reader holds a view the scan has already made
// stale.
type scanAfterRead struct {
	storage.Sessions
	txn  string
	once sync.Once
	hook func()
}

func (s *scanAfterRead) GetQR(ctx context.Context, id string) (storage.QRTransaction, error) {
	t, err := s.Sessions.GetQR(ctx, id)
	if id == s.txn {
		s.once.Do(s.hook)
	}
	return t, err
}

// rateSpy records the keys a store's rate limiter is asked about.
type rateSpy struct {
	storage.Sessions
	mu   sync.Mutex
	seen []string
}

func (r *rateSpy) Allow(ctx context.Context, key string, limit int, window time.Duration) (storage.RateDecision, error) {
	r.mu.Lock()
	r.seen = append(r.seen, key)
	r.mu.Unlock()
	return r.Sessions.Allow(ctx, key, limit, window)
}

func (r *rateSpy) keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// getSpy counts a store's GetQR calls.
type getSpy struct {
	storage.Sessions
	gets atomic.Int64
}

func (g *getSpy) GetQR(ctx context.Context, id string) (storage.QRTransaction, error) {
	g.gets.Add(1)
	return g.Sessions.GetQR(ctx, id)
}

// TestWokenView: a wake-up's record newer than the caller's view is viewed
// without a read, checked against the binding; a record no newer than the
// view, another transaction's, or none at all is read.
func TestWokenView(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, open)
			spy := &getSpy{Sessions: e.store}
			svc, _ := e.server(t, spy, generous)
			ctx := context.Background()
			txn, binding, err := svc.Begin(ctx, req(""), "192.0.2.1", "Mozilla/5.0")
			if err != nil {
				t.Fatal(err)
			}
			woke, cancel, err := svc.Watch(ctx, txn)
			if err != nil {
				t.Fatal(err)
			}
			defer cancel()
			cur, err := svc.BrowserView(ctx, txn, binding)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Scan(ctx, qrlogin.Device{HolderID: "h-w", ECardID: "e-w", DeviceID: "d-w"}, svc.CurrentFrame(cur).String()); err != nil {
				t.Fatal(err)
			}
			var rec *storage.QRTransaction
			select {
			case rec = <-woke:
			case <-time.After(3 * time.Second):
				t.Fatal("no wake-up after the scan")
			}
			if rec == nil {
				t.Fatal("the scan's wake-up carried no record")
			}
			before := spy.gets.Load()
			v, err := svc.WokenView(ctx, cur, rec, binding)
			if err != nil || v.State != qrlogin.StateScanned || v.Number == 0 || v.Version != rec.Version {
				t.Fatalf("woken view %+v, %v", v, err)
			}
			if n := spy.gets.Load() - before; n != 0 {
				t.Fatalf("a newer record was read again (%d reads)", n)
			}
			if _, err := svc.WokenView(ctx, cur, rec, "another-browser"); !errors.Is(err, qrlogin.ErrNotFound) {
				t.Fatalf("a woken record for another binding: %v", err)
			}
			other := *rec
			other.ID = "another-transaction"
			for what, r := range map[string]*storage.QRTransaction{"no record": nil, "a record no newer than the view": rec, "another transaction's record": &other} {
				before := spy.gets.Load()
				base := v
				if what != "a record no newer than the view" {
					base = cur
				}
				got, err := svc.WokenView(ctx, base, r, binding)
				if err != nil || got.State != qrlogin.StateScanned || spy.gets.Load()-before != 1 {
					t.Fatalf("%s: %+v, %v, %d reads (want one)", what, got, err, spy.gets.Load()-before)
				}
			}
		})
	}
}
