package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/essc-project/essc/idp/card"
)

// metrics are the server's Prometheus collectors, on a registry of their own
// (no global state). Domain packages report through the small interfaces
// they declare; the adapters in server.go count here.
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	logins       *prometheus.CounterVec
	qrTransition *prometheus.CounterVec
	pinLockouts  prometheus.Counter
	tokens       *prometheus.CounterVec
	storeErrors  *prometheus.CounterVec
	outboxDepth  *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "essc_http_requests_total", Help: "HTTP requests by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "essc_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route"})
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "essc_logins_total", Help: "Completed or failed logins by outcome.",
	}, []string{"outcome"})
	m.qrTransition = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "essc_qr_transitions_total", Help: "QR-Link transaction state transitions.",
	}, []string{"from", "to"})
	m.pinLockouts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "essc_pin_lockouts_total", Help: "Card PINs locked after consecutive failures.",
	})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "essc_tokens_issued_total", Help: "Tokens issued by kind and signing algorithm.",
	}, []string{"kind", "alg"})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "essc_store_errors_total", Help: "Backend outages seen by the readiness probe and the outbox watcher, by store.",
	}, []string{"store"})
	m.outboxDepth = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "essc_outbox_lag_events", Help: "Outbox events not yet processed, by consumer.",
	}, []string{"consumer"})
	m.reg.MustRegister(m.requests, m.latency, m.logins, m.qrTransition, m.pinLockouts, m.tokens,
		m.storeErrors, m.outboxDepth,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// handler serves /metrics.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

type ctxKey int

const requestIDKey ctxKey = iota

// RequestID returns the request id carried by ctx ("" if none).
func RequestID(ctx context.Context) string {
	s, _ := ctx.Value(requestIDKey).(string)
	return s
}

// statusWriter records the status code; it forwards Flush so SSE keeps working.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument wraps the whole mux: request id (X-Request-Id, generated), panic
// recovery with a fixed 500 body, access log and metrics by route pattern.
func instrument(mux *http.ServeMux, m *metrics, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := newRequestID()
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			// The mux records the pattern it matched in r (no second match
			// here: matching twice was ~1 % of a login's CPU).
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.ErrorContext(r.Context(), "panic in handler", "request_id", id, "route", route, "panic", p)
				if sw.code == 0 {
					http.Error(sw, "internal error / 服务器内部错误", http.StatusInternalServerError)
				}
			}
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			d := time.Since(start)
			m.requests.WithLabelValues(route, r.Method, strconv.Itoa(code)).Inc()
			if code == http.StatusOK && strings.HasSuffix(route, "/oauth2/token") {
				// Each profile signs with one algorithm (docs/PROTOCOL.md §1).
				alg := "ES256"
				if strings.Contains(route, "/gm/") {
					alg = "SM2SM3"
				}
				m.tokens.WithLabelValues("token_response", alg).Inc()
			}
			m.latency.WithLabelValues(route).Observe(d.Seconds())
			lvl := slog.LevelDebug
			if code >= 500 {
				lvl = slog.LevelWarn
			}
			if log.Enabled(r.Context(), lvl) { // no boxed arguments for a disabled level
				log.Log(r.Context(), lvl, "http", "request_id", id, "method", r.Method, "route", route,
					"code", code, "dur_ms", float64(d.Microseconds())/1000)
			}
		}()
		mux.ServeHTTP(sw, r)
	})
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ssnPattern finds 18-character citizen numbers inside log strings.
var ssnPattern = regexp.MustCompile(`\b\d{17}[\dXx]\b`)

// maskingHandler is the one place PII is masked in logs: any string value
// containing something shaped like a social security number is masked with
// card.MaskSSN, and attributes named ssn, name or card_number are masked
// whatever their shape. It also adds the request id from the context.
type maskingHandler struct{ next slog.Handler }

func (h maskingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h maskingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, maskString(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(maskAttr(a))
		return true
	})
	if id := RequestID(ctx); id != "" {
		out.AddAttrs(slog.String("request_id", id))
	}
	return h.next.Handle(ctx, out)
}

func (h maskingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	masked := make([]slog.Attr, len(as))
	for i, a := range as {
		masked[i] = maskAttr(a)
	}
	return maskingHandler{h.next.WithAttrs(masked)}
}

func (h maskingHandler) WithGroup(name string) slog.Handler {
	return maskingHandler{h.next.WithGroup(name)}
}

func maskAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		switch a.Key {
		case "ssn":
			return slog.String(a.Key, card.MaskSSN(v.String()))
		case "holder_name":
			return slog.String(a.Key, card.MaskName(v.String()))
		case "card_number", "card_no":
			return slog.String(a.Key, card.MaskCardNumber(v.String()))
		}
		return slog.String(a.Key, maskString(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, len(g))
		for i, x := range g {
			out[i] = maskAttr(x)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, maskString(err.Error()))
		}
	}
	return a
}

func maskString(s string) string {
	if len(s) < 18 {
		return s
	}
	return ssnPattern.ReplaceAllStringFunc(s, card.MaskSSN)
}
