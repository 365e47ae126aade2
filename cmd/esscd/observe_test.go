package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMaskingHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(maskingHandler{slog.NewJSONHandler(&buf, nil)})
	const ssn = "11010519491231002X"
	log.Info("lookup "+ssn, "ssn", ssn, "holder_name", "张三丰", "card_number", "A12345678",
		"note", "holder "+ssn+" at outlet", "err", errors.New("no card for "+ssn),
		slog.Group("g", "x", ssn))
	out := buf.String()
	if strings.Contains(out, ssn) || strings.Contains(out, "张三丰") || strings.Contains(out, "A12345678") {
		t.Fatalf("PII leaked into the log: %s", out)
	}
	if !strings.Contains(out, "1101**********002X") {
		t.Fatalf("masked SSN missing: %s", out)
	}
}

func TestInstrument(t *testing.T) {
	m := newMetrics()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) {
		if RequestID(r.Context()) == "" {
			t.Error("no request id in context")
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
	mux.Handle("GET /metrics", m.handler())
	h := instrument(mux, m, slog.New(slog.DiscardHandler))

	for _, tc := range []struct {
		path string
		code int
	}{{"/ok", 200}, {"/boom", 500}, {"/nope", 404}} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.code {
			t.Errorf("%s: code %d, want %d", tc.path, rec.Code, tc.code)
		}
		if rec.Header().Get("X-Request-Id") == "" {
			t.Errorf("%s: no X-Request-Id", tc.path)
		}
		if strings.Contains(rec.Body.String(), "boom") {
			t.Errorf("%s: panic value leaked to the client", tc.path)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`essc_http_requests_total{code="200",method="GET",route="GET /ok"} 1`,
		`essc_http_requests_total{code="500",method="GET",route="GET /boom"} 1`,
		`route="unmatched"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
