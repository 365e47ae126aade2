package qrlogin

import (
	"bytes"
	"context"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/essc-project/essc/storage"
)

//go:embed web/*.html web/static/*
var webFS embed.FS

var pageTmpl = template.Must(template.New("").ParseFS(webFS, "web/*.html"))

// Base is the path prefix of the browser endpoints.
const Base = "/qr/v1/transactions/"

// Handler serves the browser side of QR-Link v1 (DESIGN.md §7, §9):
//
//	GET  /qr/v1/transactions/{txn}            state (RFC 8628 vocabulary; ?wait=N long-polls)
//	GET  /qr/v1/transactions/{txn}/events     server-sent events of the state
//	GET  /qr/v1/transactions/{txn}/frame      the current frame: payload and QR image (data URI)
//	GET  /qr/v1/transactions/{txn}/frame.png  the current frame as a PNG image
//	GET  /qr/v1/transactions/{txn}/page       the login page again (after a mode switch, without JS)
//	POST /qr/v1/transactions/{txn}/elderly    switch to elderly mode
//	POST /qr/v1/transactions/{txn}/complete   collect an approved transaction (→ the OIDC redirect)
//	POST /qr/v1/transactions/{txn}/cancel     cancel
//	POST /qr/v1/transactions/{txn}/restart    a fresh QR code for the same request
//	GET  /qr/v1/static/…                      the page's script and style
//
// Every transaction endpoint requires the browser-binding cookie; without it
// a transaction reads as unknown (404 expired_token), so a stolen or guessed
// transaction id is useless to another browser.
type Handler struct{ s *Service }

// Handler returns the browser HTTP handler of s.
func (s *Service) Handler() *Handler { return &Handler{s: s} }

// Mount registers the routes on mux.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+Base+"{txn}", h.status)
	mux.HandleFunc("GET "+Base+"{txn}/events", h.events)
	mux.HandleFunc("GET "+Base+"{txn}/frame", h.frame)
	mux.HandleFunc("GET "+Base+"{txn}/frame.png", h.framePNG)
	mux.HandleFunc("GET "+Base+"{txn}/page", h.page)
	mux.HandleFunc("POST "+Base+"{txn}/elderly", h.elderly)
	mux.HandleFunc("POST "+Base+"{txn}/complete", h.complete)
	mux.HandleFunc("POST "+Base+"{txn}/cancel", h.cancel)
	mux.HandleFunc("POST "+Base+"{txn}/restart", h.restart)
	static, _ := fs.Sub(webFS, "web/static")
	mux.Handle("GET /qr/v1/static/", http.StripPrefix("/qr/v1/static/", cacheStatic(http.FileServerFS(static))))
}

// Start begins a transaction for req and renders the login page: the OIDC
// side's login step.
func (h *Handler) Start(w http.ResponseWriter, r *http.Request, req Request) {
	v, binding, err := h.s.begin(r.Context(), req, h.s.cfg.ClientIP(r), r.UserAgent())
	if err != nil {
		h.failAs(w, r, err, true) // a navigation: always a page
		return
	}
	h.setBinding(w, v.Txn, binding)
	h.render(w, r, v)
}

func (h *Handler) cookieName() string {
	if h.s.cfg.SecureCookies {
		return "__Secure-essc-qr"
	}
	return "essc-qr"
}

// setBinding sets the binding cookie, scoped to this transaction's path,
// HttpOnly and SameSite=Strict: other sites cannot make the browser send it.
func (h *Handler) setBinding(w http.ResponseWriter, txn, binding string) {
	http.SetCookie(w, &http.Cookie{
		Name: h.cookieName(), Value: binding, Path: Base + txn, MaxAge: int((h.s.cfg.TTL + retryGrace) / time.Second),
		HttpOnly: true, Secure: h.s.cfg.SecureCookies, SameSite: http.SameSiteStrictMode,
	})
}

func (h *Handler) clearBinding(w http.ResponseWriter, txn string) {
	http.SetCookie(w, &http.Cookie{Name: h.cookieName(), Value: "", Path: Base + txn, MaxAge: -1,
		HttpOnly: true, Secure: h.s.cfg.SecureCookies, SameSite: http.SameSiteStrictMode})
}

func (h *Handler) binding(r *http.Request) string {
	c, err := r.Cookie(h.cookieName())
	if err != nil {
		return ""
	}
	return c.Value
}

// view loads the transaction for this browser; unknown ids and missing
// cookies are rate limited per IP (enumeration).
func (h *Handler) view(w http.ResponseWriter, r *http.Request) (View, bool) {
	v, err := h.s.BrowserView(r.Context(), r.PathValue("txn"), h.binding(r))
	if err == nil {
		return v, true
	}
	if errors.Is(err, ErrNotFound) {
		if lerr := h.s.allow(r.Context(), "qr:miss:"+h.s.cfg.ClientIP(r), h.s.cfg.Limits.LookupsPerIP, time.Minute); lerr != nil {
			h.fail(w, r, lerr)
			return View{}, false
		}
	}
	h.fail(w, r, err)
	return View{}, false
}

// statusBody is the polling answer, in RFC 8628's vocabulary.
type statusBody struct {
	State     string `json:"state"`
	Error     string `json:"error,omitempty"`
	Reason    string `json:"reason,omitempty"` // with access_denied: holder, wrong_number, card_invalid
	Number    int    `json:"number,omitempty"`
	Interval  int    `json:"interval,omitempty"`
	ExpiresIn int    `json:"expires_in,omitempty"`
}

func (h *Handler) statusOf(v View) statusBody {
	b := statusBody{State: v.State}
	switch v.State {
	case StatePending, StateScanned:
		b.Error, b.Interval = "authorization_pending", int(PollInterval/time.Second)
		b.ExpiresIn = int(v.ExpiresAt.Sub(h.s.now()) / time.Second)
		if b.ExpiresIn < 0 {
			b.ExpiresIn = 0
		}
		b.Number = v.Number
	case StateDenied:
		b.Error, b.Reason = "access_denied", v.Reason
	case StateCancelled:
		b.Error = "access_denied"
	case StateExpired:
		b.Error = "expired_token"
	}
	return b
}

func terminal(state string) bool {
	switch state {
	case StatePending, StateScanned:
		return false
	}
	return true
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	wait, _ := strconv.Atoi(r.URL.Query().Get("wait"))
	var v View
	var ok bool
	var woke <-chan *storage.QRTransaction
	if wait > 0 {
		var cancel func()
		v, woke, cancel, ok = h.watchView(w, r)
		if ok {
			defer cancel()
		}
	} else {
		v, ok = h.view(w, r)
	}
	if !ok {
		return
	}
	if err := h.s.allowTxn(r.Context(), "qr:poll:"+v.Txn, h.s.cfg.Limits.PollsPerTxn, PollInterval); err != nil {
		if errors.Is(err, ErrRateLimited) {
			writeJSON(w, http.StatusBadRequest, statusBody{State: v.State, Error: "slow_down", Interval: int(PollInterval/time.Second) + 1})
			return
		}
		h.fail(w, r, err)
		return
	}
	if wait > 0 && !terminal(v.State) {
		v = h.waitChange(r.Context(), v, woke, h.binding(r), time.Duration(min(wait, 25))*time.Second)
	}
	writeJSON(w, http.StatusOK, h.statusOf(v))
}

// watchView subscribes to the transaction's wake-ups and then reads the
// browser's view, so that read is the one a wait starts from: a transition
// after it wakes the channel (reading before subscribing needed a second
// read after). cancel ends the subscription; on failure the answer is
// written and ok is false.
func (h *Handler) watchView(w http.ResponseWriter, r *http.Request) (v View, woke <-chan *storage.QRTransaction, cancel func(), ok bool) {
	if !validTxnID(r.PathValue("txn")) {
		h.view(w, r) // answers as for any unknown transaction
		return View{}, nil, nil, false
	}
	woke, cancel, err := h.s.Watch(r.Context(), r.PathValue("txn"))
	if err != nil {
		h.fail(w, r, err)
		return View{}, nil, nil, false
	}
	if v, ok = h.view(w, r); !ok {
		cancel()
		return View{}, nil, nil, false
	}
	return v, woke, cancel, true
}

// waitChange long-polls from v, read after subscribing to woke: it returns
// when the state changes, or after d.
func (h *Handler) waitChange(ctx context.Context, v View, woke <-chan *storage.QRTransaction, binding string, d time.Duration) View {
	timer := time.NewTimer(min(d, v.ExpiresAt.Sub(h.s.now())+time.Second))
	defer timer.Stop()
	for {
		var rec *storage.QRTransaction
		select {
		case r, ok := <-woke:
			if !ok {
				return v
			}
			rec = r
		case <-timer.C:
			return v
		case <-ctx.Done():
			return v
		}
		nv, err := h.s.WokenView(ctx, v, rec, binding)
		if err != nil {
			return View{Txn: v.Txn, State: StateExpired}
		}
		if nv.State != v.State {
			return nv
		}
		v = nv
	}
}

// events streams the state as server-sent events until it is final, the
// transaction expires, or the server shuts down (the request context ends).
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	v, ch, cancel, ok := h.watchView(w, r)
	if !ok {
		return
	}
	defer cancel()
	if err := h.s.allowTxn(r.Context(), "qr:sse:"+v.Txn, h.s.cfg.Limits.StreamsPerTxn, time.Minute); err != nil {
		h.fail(w, r, err)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		h.fail(w, r, errors.New("qrlogin: streaming unsupported"))
		return
	}
	ctx := r.Context()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: %d\n\n", PollInterval.Milliseconds())
	deadline := time.NewTimer(v.ExpiresAt.Sub(h.s.now()) + time.Second)
	defer deadline.Stop()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	last, nv := "", v // the first event is the read watchView made
	for {
		if key := nv.State + strconv.Itoa(nv.Number); key != last {
			last = key
			b, _ := json.Marshal(h.statusOf(nv))
			fmt.Fprintf(w, "event: state\ndata: %s\n\n", b)
			fl.Flush()
		}
		if terminal(nv.State) {
			return
		}
		var rec *storage.QRTransaction
		select {
		case woke, ok := <-ch:
			if !ok {
				return
			}
			rec = woke
		case <-deadline.C:
		case <-ping.C:
			fmt.Fprint(w, ": ping\n\n")
			fl.Flush()
		case <-ctx.Done():
			return
		}
		var err error
		if nv, err = h.s.WokenView(ctx, nv, rec, h.binding(r)); err != nil {
			nv = View{Txn: v.Txn, State: StateExpired}
		}
	}
}

// frameBody is the current frame for the page's animation. The page draws
// the QR itself from the payload (static/qrcode.js): encoding a QR symbol
// costs the server about 20 SM2 signatures' worth of CPU, and an open page
// asks for a frame every second. Clients that cannot draw ask for the image
// with ?image=svg (or fetch frame.png).
type frameBody struct {
	Payload string `json:"payload"`
	Image   string `json:"image,omitempty"` // data:image/svg+xml;base64,…, only with ?image=svg
	NextMS  int64  `json:"next_ms"`
	Elderly bool   `json:"elderly"`
	// Upcoming are the frames after this one, each with the time it is due
	// (ms from now); RefreshMS is when to ask again. The page shows them on
	// schedule: one request per UpcomingFrames+1 frames instead of one per
	// frame (an open page asked every second). Not with ?image=svg nor in
	// the login page itself.
	Upcoming  []upcomingFrame `json:"upcoming,omitempty"`
	RefreshMS int64           `json:"refresh_ms,omitempty"`
}

type upcomingFrame struct {
	Payload string `json:"payload"`
	AtMS    int64  `json:"at_ms"`
}

// UpcomingFrames is how many frames after the current one a frame response
// carries.
const UpcomingFrames = 4

func (h *Handler) frame(w http.ResponseWriter, r *http.Request) {
	v, ok := h.view(w, r)
	if !ok {
		return
	}
	if err := h.s.allowTxn(r.Context(), "qr:frame:"+v.Txn, h.s.cfg.Limits.FramesPerTxn, time.Minute); err != nil {
		h.fail(w, r, err)
		return
	}
	if v.State != StatePending {
		writeJSON(w, http.StatusConflict, statusBody{State: v.State, Error: h.statusOf(v).Error})
		return
	}
	n, withImage := 1+UpcomingFrames, r.URL.Query().Get("image") == "svg"
	if withImage {
		n = 1
	}
	fb, err := h.frameBody(v, n, withImage)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fb)
}

// framePNG serves the current frame as an image (for clients that cannot
// use the data URI, and for tests reading the QR like a camera would).
func (h *Handler) framePNG(w http.ResponseWriter, r *http.Request) {
	v, ok := h.view(w, r)
	if !ok {
		return
	}
	if err := h.s.allowTxn(r.Context(), "qr:frame:"+v.Txn, h.s.cfg.Limits.FramesPerTxn, time.Minute); err != nil {
		h.fail(w, r, err)
		return
	}
	if v.State != StatePending {
		h.fail(w, r, ErrFinished)
		return
	}
	img, err := QRImage(h.s.CurrentFrame(v).String(), v.Elderly)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(img)
}

// frameBody is the current frame and the n-1 frames after it.
func (h *Handler) frameBody(v View, n int, withImage bool) (frameBody, error) {
	fs := h.s.Frames(v, n)
	interval := FrameInterval
	if v.Elderly {
		interval = ElderlyFrameInterval
	}
	now := h.s.now()
	due := func(e int) int64 { return v.CreatedAt.Add(time.Duration(e) * time.Second).Sub(now).Milliseconds() }
	fb := frameBody{Payload: fs[0].String(), NextMS: max(due(fs[0].Elapsed)+interval.Milliseconds(), 100), Elderly: v.Elderly}
	for _, f := range fs[1:] {
		fb.Upcoming = append(fb.Upcoming, upcomingFrame{Payload: f.String(), AtMS: max(due(f.Elapsed), 0)})
	}
	if len(fb.Upcoming) > 0 {
		fb.RefreshMS = max(due(fs[len(fs)-1].Elapsed)+interval.Milliseconds(), 100)
	}
	if withImage {
		img, err := QRSVG(fb.Payload)
		if err != nil {
			return frameBody{}, err
		}
		fb.Image = "data:image/svg+xml;base64," + base64.StdEncoding.EncodeToString([]byte(img))
	}
	return fb, nil
}

func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	if v, ok := h.view(w, r); ok {
		h.render(w, r, v)
	}
}

func (h *Handler) elderly(w http.ResponseWriter, r *http.Request) {
	v, err := h.s.SetElderly(r.Context(), r.PathValue("txn"), h.binding(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Base+v.Txn+"/page", http.StatusSeeOther)
}

func (h *Handler) cancel(w http.ResponseWriter, r *http.Request) {
	txn := r.PathValue("txn")
	if err := h.s.Cancel(r.Context(), txn, h.binding(r)); err != nil && !errors.Is(err, ErrFinished) {
		h.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Base+txn+"/page", http.StatusSeeOther)
}

func (h *Handler) restart(w http.ResponseWriter, r *http.Request) {
	old := r.PathValue("txn")
	txn, binding, err := h.s.Restart(r.Context(), old, h.binding(r), h.s.cfg.ClientIP(r), r.UserAgent())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.clearBinding(w, old)
	h.setBinding(w, txn, binding)
	http.Redirect(w, r, Base+txn+"/page", http.StatusSeeOther)
}

// complete collects an approved transaction and hands the browser to the
// OIDC side, which redirects to the relying party with the code. Before
// approval it shows the page again; after it was collected once it is final.
func (h *Handler) complete(w http.ResponseWriter, r *http.Request) {
	txn := r.PathValue("txn")
	v, a, err := h.s.Collect(r.Context(), txn, h.binding(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if a == nil {
		h.render(w, r, v)
		return
	}
	h.clearBinding(w, txn)
	h.s.cfg.Completer.Complete(w, r, v.Request, *a)
}

// pageData feeds web/login.html, rendered by appendLoginPage.
type pageData struct {
	View      View
	Base      string
	RPName    string
	RPDomain  string
	Purpose   string
	Data      []string
	Frame     frameBody
	Upcoming  string // JSON of Frame.Upcoming, for login.js
	AppLink   template.URL
	Message   string
	CSSPath   string
	JSPath    string
	QRJSPath  string
	Remaining int
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, v View) {
	d := pageData{View: v, Base: Base + v.Txn, RPName: v.Request.ClientName, RPDomain: v.Request.ClientDomain,
		Purpose: purposeText(v.Request.Purpose), Data: scopeTexts(v.Request.Scopes),
		CSSPath: "/qr/v1/static/login.css", JSPath: "/qr/v1/static/login.js", QRJSPath: "/qr/v1/static/qrcode.js",
		Remaining: max(int(v.ExpiresAt.Sub(h.s.now())/time.Second), 0)}
	switch v.State {
	case StatePending:
		// The page comes with the frames of its first seconds: a holder who
		// scans before they run out costs no /frame request at all.
		fb, err := h.frameBody(v, 1+UpcomingFrames, false)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		up, err := json.Marshal(fb.Upcoming)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		d.Frame, d.Upcoming = fb, string(up)
		d.AppLink = template.URL(fb.Payload) // essc:// same-device link, our own payload only
	case StateScanned:
		d.Message = "已扫码，请在手机上选择与下方相同的数字并确认。"
	case StateApproved:
		d.Message = "手机已确认，正在登录……"
	case StateDenied:
		d.Message = deniedMessage(v.Reason)
	case StateCancelled:
		d.Message = "登录已取消。"
	case StateExpired:
		d.Message = "二维码已过期，请刷新二维码后重新扫码。"
	case StateConsumed:
		d.Message = "该登录已完成。"
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// appendLoginPage writes what pageTmpl's login.html would, without its
	// cost (see there).
	w.Write(appendLoginPage(make([]byte, 0, loginPageCap(&d)), &d))
}

// securityHeaders: no framing (clickjacking of the QR), no third-party
// anything, no referrer (the transaction id is in the URL).
func securityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
}

func cacheStatic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// fail answers with a fixed message; details go to the log only.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.failAs(w, r, err, wantsHTML(r))
}

// failAs is fail with the choice of a page (html) or a JSON status body.
func (h *Handler) failAs(w http.ResponseWriter, r *http.Request, err error, html bool) {
	code, body := http.StatusInternalServerError, statusBody{State: "error", Error: "server_error"}
	switch {
	case errors.Is(err, ErrNotFound):
		code, body = http.StatusNotFound, statusBody{State: StateExpired, Error: "expired_token"}
	case errors.Is(err, ErrRateLimited):
		code, body = http.StatusTooManyRequests, statusBody{State: "error", Error: "slow_down", Interval: int(PollInterval / time.Second)}
		w.Header().Set("Retry-After", "60")
	case errors.Is(err, ErrFinished):
		code, body = http.StatusConflict, statusBody{State: "error", Error: "access_denied"}
	case isUnavailable(err):
		code, body = http.StatusServiceUnavailable, statusBody{State: "error", Error: "temporarily_unavailable"}
	}
	if code >= 500 {
		h.s.log.ErrorContext(r.Context(), "qrlogin", "path", r.URL.Path, "err", err)
	}
	if html {
		securityHeaders(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(code)
		pageTmpl.ExecuteTemplate(w, "error.html", map[string]string{"Message": plainMessage(code), "CSSPath": "/qr/v1/static/login.css"})
		return
	}
	writeJSON(w, code, body)
}

// deniedMessage is the page's text for a denied transaction.
func deniedMessage(reason string) string {
	switch reason {
	case ReasonCardInvalid:
		return "扫码所用的社保卡或电子社保卡状态异常（如已挂失、注销），无法登录。请到社保服务网点或在 App 中办理后再试。"
	case ReasonWrongNumber:
		return "手机上选择的数字与本页面不一致，本次登录已取消。如果不是您本人扫码，请注意账户安全。"
	}
	return "登录已被拒绝。如果不是您本人操作，无需处理。"
}

func plainMessage(code int) string {
	switch code {
	case http.StatusNotFound:
		return "登录请求不存在或已过期，请返回网站重新登录。"
	case http.StatusTooManyRequests:
		return "操作过于频繁，请稍后再试。"
	case http.StatusConflict:
		return "该登录请求已结束，请返回网站重新登录。"
	case http.StatusServiceUnavailable:
		return "服务暂时不可用，请稍后再试。"
	}
	return "系统繁忙，请稍后再试。"
}

func wantsHTML(r *http.Request) bool {
	return r.Method == http.MethodPost || r.URL.Path == "" || bytes.HasSuffix([]byte(r.URL.Path), []byte("/page")) ||
		(r.Header.Get("Accept") != "" && bytes.Contains([]byte(r.Header.Get("Accept")), []byte("text/html")))
}

func isUnavailable(err error) bool { return errors.Is(err, storage.ErrUnavailable) }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
