package entitlement

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
)

// Principal is an authenticated agency client.
type Principal struct {
	ClientID string
	Scopes   []string
}

// ErrUnauthenticated is what an Authenticator returns (wrapped) for a
// missing or invalid credential (401). Errors wrapping storage.ErrUnavailable
// or ErrUnavailable answer 503.
var ErrUnauthenticated = errors.New("entitlement: unauthenticated")

// Authenticator authenticates a request's bearer access token (cmd wires the
// OIDC provider's Authenticate into it).
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// HandlerConfig configures NewHandler.
type HandlerConfig struct {
	Service *Service      // required
	Auth    Authenticator // required
	// Keys resolves attestation verification keys (both profiles' published
	// keys); required for the verify endpoint.
	Keys   signing.KeyResolver
	Logger *slog.Logger
	// MaxBody bounds ordinary bodies (0: 16 KiB); MaxBatchBody the batch
	// status body (0: 1 MiB, enough for MaxBatch SSNs).
	MaxBody      int64
	MaxBatchBody int64
}

// Handler serves /entitlement/v1.
type Handler struct {
	cfg HandlerConfig
	log *slog.Logger
}

// NewHandler validates cfg.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.Service == nil || cfg.Auth == nil || cfg.Keys == nil {
		return nil, errors.New("entitlement: handler needs Service, Auth and Keys")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 16 << 10
	}
	if cfg.MaxBatchBody <= 0 {
		cfg.MaxBatchBody = 1 << 20
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Handler{cfg: cfg, log: log}, nil
}

// Mount registers the routes (all need scope essc.entitlement.manage; an
// agency only ever sees its own beneficiaries — another agency's id is 404):
//
//	POST   /entitlement/v1/beneficiaries                   {"ssn","benefit","anchor":"YYYY-MM-DD"}
//	GET    /entitlement/v1/beneficiaries/{id}
//	PATCH  /entitlement/v1/beneficiaries/{id}              {"version","benefit"?,"anchor"?}
//	DELETE /entitlement/v1/beneficiaries/{id}
//	GET    /entitlement/v1/beneficiaries/{id}/attestation  the last attestation JWT
//	POST   /entitlement/v1/status                          {"ssns":[…]} (≤ 20,000)
//	GET    /entitlement/v1/due?month=YYYY-MM&after=&limit=
//	GET    /entitlement/v1/events?after=&limit=
//	GET    /entitlement/v1/webhooks/dead-letters?after=&limit=
//	POST   /entitlement/v1/webhooks/redeliver              {"from_seq"}
//	POST   /entitlement/v1/attestations/verify             {"attestation"}
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.Handle("POST /entitlement/v1/beneficiaries", h.route(h.register))
	mux.Handle("GET /entitlement/v1/beneficiaries/{id}", h.route(h.get))
	mux.Handle("PATCH /entitlement/v1/beneficiaries/{id}", h.route(h.update))
	mux.Handle("DELETE /entitlement/v1/beneficiaries/{id}", h.route(h.remove))
	mux.Handle("GET /entitlement/v1/beneficiaries/{id}/attestation", h.route(h.attestation))
	mux.Handle("POST /entitlement/v1/status", h.route(h.batch))
	mux.Handle("GET /entitlement/v1/due", h.route(h.due))
	mux.Handle("GET /entitlement/v1/events", h.route(h.events))
	mux.Handle("GET /entitlement/v1/webhooks/dead-letters", h.route(h.deadLetters))
	mux.Handle("POST /entitlement/v1/webhooks/redeliver", h.route(h.redeliver))
	mux.Handle("POST /entitlement/v1/attestations/verify", h.route(h.verify))
}

type reqIDKey struct{}

func (h *Handler) route(fn func(w http.ResponseWriter, r *http.Request, agency string) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [8]byte
		_, _ = rand.Read(b[:])
		rid := hex.EncodeToString(b[:])
		w.Header().Set("X-Request-Id", rid)
		w.Header().Set("Cache-Control", "no-store")
		r = r.WithContext(context.WithValue(r.Context(), reqIDKey{}, rid))
		p, err := h.cfg.Auth.Authenticate(r)
		if err != nil {
			if errors.Is(err, storage.ErrUnavailable) || errors.Is(err, ErrUnavailable) {
				h.fail(w, r, fmt.Errorf("%w: authenticate: %w", ErrUnavailable, err))
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			h.fail(w, r, fmt.Errorf("%w: %w", ErrUnauthenticated, err))
			return
		}
		if !slices.Contains(p.Scopes, ScopeManage) {
			w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+ScopeManage+`"`)
			h.fail(w, r, errScope)
			return
		}
		if err := fn(w, r, p.ClientID); err != nil {
			h.fail(w, r, err)
		}
	})
}

var errScope = errors.New("entitlement: insufficient scope")

// apiError is the fixed wire form of every failure.
type apiError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// fail maps err to a fixed answer; details go to the log only.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code, desc := http.StatusInternalServerError, "server_error", "internal error"
	switch {
	case errors.Is(err, ErrUnavailable), errors.Is(err, storage.ErrUnavailable):
		status, code, desc = http.StatusServiceUnavailable, "temporarily_unavailable", "service temporarily unavailable, retry later"
		w.Header().Set("Retry-After", "5")
	case errors.Is(err, ErrUnauthenticated):
		status, code, desc = http.StatusUnauthorized, "invalid_token", "missing or invalid access token"
	case errors.Is(err, errScope):
		status, code, desc = http.StatusForbidden, "insufficient_scope", "scope essc.entitlement.manage required"
	case errors.Is(err, errTooLarge):
		status, code, desc = http.StatusRequestEntityTooLarge, "invalid_request", "request body too large"
	case errors.Is(err, ErrInvalidRequest):
		status, code, desc = http.StatusBadRequest, "invalid_request", "malformed or invalid request"
	case errors.Is(err, ErrNotFound):
		status, code, desc = http.StatusNotFound, "not_found", "no such beneficiary"
	case errors.Is(err, ErrExists):
		status, code, desc = http.StatusConflict, "already_registered", "beneficiary already registered for this benefit"
	case errors.Is(err, ErrConflict):
		status, code, desc = http.StatusConflict, "version_conflict", "the record changed; read it again"
	}
	lvl := slog.LevelInfo
	if status >= 500 {
		lvl = slog.LevelError
	}
	rid, _ := r.Context().Value(reqIDKey{}).(string)
	h.log.Log(r.Context(), lvl, "entitlement request failed", "request_id", rid, "path", r.URL.Path, "status", status, "err", err)
	writeJSON(w, status, apiError{Error: code, Description: desc})
}

var errTooLarge = errors.New("entitlement: body too large")

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads one strict JSON object (unknown fields, trailing data and
// oversize bodies are refused).
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge
		}
		return fmt.Errorf("%w: body", ErrInvalidRequest)
	}
	return decodeStrict(body, v)
}

func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: json", ErrInvalidRequest)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", ErrInvalidRequest)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data", ErrInvalidRequest)
	}
	return nil
}

func parseDate(s string) (time.Time, error) {
	t, err := time.ParseInLocation(time.DateOnly, s, CST())
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: date", ErrInvalidRequest)
	}
	return t, nil
}

// RegisterRequest is the body of POST /beneficiaries.
type RegisterRequest struct {
	SSN     string `json:"ssn"`
	Benefit string `json:"benefit"`
	Anchor  string `json:"anchor"`
}

func (h *Handler) register(w http.ResponseWriter, r *http.Request, agency string) error {
	var req RegisterRequest
	if err := decode(w, r, h.cfg.MaxBody, &req); err != nil {
		return err
	}
	anchor, err := parseDate(req.Anchor)
	if err != nil {
		return err
	}
	v, err := h.cfg.Service.Register(r.Context(), agency, RegisterInput{SSN: req.SSN, Benefit: req.Benefit, Anchor: anchor})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, agency string) error {
	v, err := h.cfg.Service.Get(r.Context(), agency, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// UpdateRequest is the body of PATCH /beneficiaries/{id}.
type UpdateRequest struct {
	Version int64  `json:"version"`
	Benefit string `json:"benefit,omitempty"`
	Anchor  string `json:"anchor,omitempty"`
}

func (h *Handler) update(w http.ResponseWriter, r *http.Request, agency string) error {
	var req UpdateRequest
	if err := decode(w, r, h.cfg.MaxBody, &req); err != nil {
		return err
	}
	if req.Version < 1 {
		return fmt.Errorf("%w: version", ErrInvalidRequest)
	}
	in := UpdateInput{Version: req.Version, Benefit: req.Benefit}
	if req.Anchor != "" {
		var err error
		if in.Anchor, err = parseDate(req.Anchor); err != nil {
			return err
		}
	}
	v, err := h.cfg.Service.Update(r.Context(), agency, r.PathValue("id"), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (h *Handler) remove(w http.ResponseWriter, r *http.Request, agency string) error {
	if err := h.cfg.Service.Remove(r.Context(), agency, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) attestation(w http.ResponseWriter, r *http.Request, agency string) error {
	tok, err := h.cfg.Service.Attestation(r.Context(), agency, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"attestation": tok})
	return nil
}

// BatchRequest is the body of POST /status.
type BatchRequest struct {
	SSNs []string `json:"ssns"`
}

// BatchResponse answers POST /status.
type BatchResponse struct {
	Beneficiaries []View   `json:"beneficiaries"`
	Missing       []string `json:"missing"`
}

func (h *Handler) batch(w http.ResponseWriter, r *http.Request, agency string) error {
	var req BatchRequest
	if err := decode(w, r, h.cfg.MaxBatchBody, &req); err != nil {
		return err
	}
	found, missing, err := h.cfg.Service.Batch(r.Context(), agency, req.SSNs)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, BatchResponse{Beneficiaries: found, Missing: missing})
	return nil
}

func queryInt(r *http.Request, name string, def, max int64) (int64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || (max > 0 && v > max) {
		return 0, fmt.Errorf("%w: %s", ErrInvalidRequest, name)
	}
	return v, nil
}

func (h *Handler) due(w http.ResponseWriter, r *http.Request, agency string) error {
	limit, err := queryInt(r, "limit", 1000, 10000)
	if err != nil {
		return err
	}
	after := r.URL.Query().Get("after")
	if len(after) > 64 {
		return fmt.Errorf("%w: after", ErrInvalidRequest)
	}
	vs, err := h.cfg.Service.Due(r.Context(), agency, r.URL.Query().Get("month"), after, int(limit))
	if err != nil {
		return err
	}
	next := ""
	if len(vs) == int(limit) && len(vs) > 0 {
		next = vs[len(vs)-1].ID
	}
	writeJSON(w, http.StatusOK, map[string]any{"beneficiaries": vs, "next": next})
	return nil
}

// FeedEvent is one event on the wire (feed and webhooks share it). ID is
// the idempotency key.
type FeedEvent struct {
	ID            string          `json:"id"`
	Seq           int64           `json:"seq"`
	Type          string          `json:"type"`
	BeneficiaryID string          `json:"beneficiary_id"`
	At            time.Time       `json:"at"`
	Data          json.RawMessage `json:"data"`
}

// EventID is the idempotency key of an event: stable across redeliveries.
func EventID(seq int64) string { return "evt_" + strconv.FormatInt(seq, 10) }

func feedEvent(e storage.EntitlementEvent) FeedEvent {
	return FeedEvent{ID: EventID(e.Seq), Seq: e.Seq, Type: e.Type, BeneficiaryID: e.BeneficiaryID, At: e.At, Data: e.Payload}
}

func (h *Handler) events(w http.ResponseWriter, r *http.Request, agency string) error {
	after, err := queryInt(r, "after", 0, 0)
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 1000, 10000)
	if err != nil {
		return err
	}
	evs, err := h.cfg.Service.Events(r.Context(), agency, after, int(limit))
	if err != nil {
		return err
	}
	out := make([]FeedEvent, len(evs))
	for i, e := range evs {
		out[i] = feedEvent(e)
		after = e.Seq
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out, "cursor": after})
	return nil
}

func (h *Handler) deadLetters(w http.ResponseWriter, r *http.Request, agency string) error {
	after, err := queryInt(r, "after", 0, 0)
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 1000, 10000)
	if err != nil {
		return err
	}
	ds, err := h.cfg.Service.DeadLetters(r.Context(), agency, after, int(limit))
	if err != nil {
		return err
	}
	type dl struct {
		ID       string    `json:"id"`
		Seq      int64     `json:"seq"`
		Attempts int       `json:"attempts"`
		At       time.Time `json:"at"`
	}
	out := make([]dl, len(ds))
	for i, d := range ds {
		out[i] = dl{ID: EventID(d.Seq), Seq: d.Seq, Attempts: d.Attempts, At: d.At}
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": out})
	return nil
}

func (h *Handler) redeliver(w http.ResponseWriter, r *http.Request, agency string) error {
	var req struct {
		FromSeq int64 `json:"from_seq"`
	}
	if err := decode(w, r, h.cfg.MaxBody, &req); err != nil {
		return err
	}
	if err := h.cfg.Service.Redeliver(r.Context(), agency, req.FromSeq); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (h *Handler) verify(w http.ResponseWriter, r *http.Request, agency string) error {
	var req struct {
		Attestation string `json:"attestation"`
	}
	if err := decode(w, r, h.cfg.MaxBody, &req); err != nil {
		return err
	}
	c, err := VerifyAttestation(req.Attestation, h.cfg.Keys, agency, h.cfg.Service.now())
	if err != nil {
		rid, _ := r.Context().Value(reqIDKey{}).(string)
		h.log.InfoContext(r.Context(), "attestation verification failed", "request_id", rid, "err", err)
		writeJSON(w, http.StatusOK, map[string]any{"valid": false})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"valid": true, "claims": c})
	return nil
}
