package admin

import (
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
	"strings"
	"time"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/storage"
)

// Scopes an admin client needs (client_credentials grant).
const (
	ScopeCards   = "essc.admin.cards"
	ScopeClients = "essc.admin.clients"
	ScopeAudit   = "essc.admin.audit"
)

// Principal is an authenticated admin caller.
type Principal struct {
	ClientID string
	Scopes   []string
}

// ErrUnauthenticated is what an Authenticator returns (wrapped) for a
// missing, malformed, expired or revoked credential: 401. Any error wrapping
// storage.ErrUnavailable or card.ErrUnavailable is a 503; anything else is
// treated as 401 too.
var ErrUnauthenticated = errors.New("admin: unauthenticated")

// Authenticator authenticates an admin request (e.g. a bearer access token
// introspected by the OIDC provider).
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// Cards is the card service the API drives; *card.Service implements it.
type Cards interface {
	IssueCard(ctx context.Context, a card.Actor, r card.IssueRequest) (card.Issued, error)
	Card(ctx context.Context, number string) (card.CardView, error)
	ReportLoss(ctx context.Context, a card.Actor, ref card.CardRef) (storage.Card, error)
	Unfreeze(ctx context.Context, a card.Actor, ref card.CardRef) (storage.Card, error)
	Replace(ctx context.Context, a card.Actor, ref card.CardRef, r card.ReplaceRequest) (card.Issued, error)
	Cancel(ctx context.Context, a card.Actor, ref card.CardRef, reason storage.CancelReason) (storage.Card, error)
	UnlockPIN(ctx context.Context, a card.Actor, ref card.CardRef) (storage.Card, error)
	ResetPIN(ctx context.Context, a card.Actor, ref card.CardRef) (storage.Card, error)
}

var _ Cards = (*card.Service)(nil)

// AuditLog is the audit log the API reads; storage.Registry implements it.
type AuditLog interface {
	AuditEntries(ctx context.Context, afterSeq int64, limit int) ([]storage.AuditEntry, error)
	VerifyAudit(ctx context.Context) (storage.AuditReport, error)
}

// Config configures New.
type Config struct {
	Cards   Cards         // required
	Clients *Clients      // required
	Audit   AuditLog      // required
	Auth    Authenticator // required
	Logger  *slog.Logger  // slog.Default if nil
	// MaxBody bounds request bodies; 0 means 64 KiB.
	MaxBody int64
}

// Handler serves /admin/v1. Create it with New and Mount it.
type Handler struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.Cards == nil || cfg.Clients == nil || cfg.Audit == nil || cfg.Auth == nil {
		return nil, errors.New("admin: Cards, Clients, Audit and Auth are required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Handler{cfg: cfg, log: log}, nil
}

// Mount registers the routes on mux (Go 1.22+ method patterns):
//
//	POST /admin/v1/cards                        issue a card
//	GET  /admin/v1/cards/{number}               card, holder (masked), live e-card
//	POST /admin/v1/cards/{number}/report-loss   body {"version"}
//	POST /admin/v1/cards/{number}/unfreeze      body {"version"}
//	POST /admin/v1/cards/{number}/replace       body {"version","new_number","region"}
//	POST /admin/v1/cards/{number}/cancel        body {"version","reason"}
//	POST /admin/v1/cards/{number}/unlock-pin    body {"version"}
//	POST /admin/v1/cards/{number}/reset-pin     body {"version"}
//	POST /admin/v1/clients                      register (secret returned once)
//	GET  /admin/v1/clients                      list (?after=&limit=)
//	GET  /admin/v1/clients/{id}
//	POST /admin/v1/clients/{id}/disable         body {"version"}
//	GET  /admin/v1/audit                        entries (?after=&limit=)
//	POST /admin/v1/audit/verify                 chain verification report
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.Handle("POST /admin/v1/cards", h.route(ScopeCards, h.issueCard))
	mux.Handle("GET /admin/v1/cards/{number}", h.route(ScopeCards, h.getCard))
	mux.Handle("POST /admin/v1/cards/{number}/{action}", h.route(ScopeCards, h.cardAction))
	mux.Handle("POST /admin/v1/clients", h.route(ScopeClients, h.createClient))
	mux.Handle("GET /admin/v1/clients", h.route(ScopeClients, h.listClients))
	mux.Handle("GET /admin/v1/clients/{id}", h.route(ScopeClients, h.getClient))
	mux.Handle("POST /admin/v1/clients/{id}/disable", h.route(ScopeClients, h.disableClient))
	mux.Handle("GET /admin/v1/audit", h.route(ScopeAudit, h.listAudit))
	mux.Handle("POST /admin/v1/audit/verify", h.route(ScopeAudit, h.verifyAudit))
}

type ctxKey struct{}

// route authenticates, checks the scope, assigns a request id and maps the
// endpoint's error to the wire.
func (h *Handler) route(scope string, fn func(w http.ResponseWriter, r *http.Request, p Principal) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rid := requestID(r)
		w.Header().Set("X-Request-Id", rid)
		w.Header().Set("Cache-Control", "no-store")
		ctx := context.WithValue(r.Context(), ctxKey{}, rid)
		r = r.WithContext(ctx)
		p, err := h.cfg.Auth.Authenticate(r)
		if err != nil {
			if unavailable(err) {
				h.fail(w, r, err)
				return
			}
			h.log.InfoContext(ctx, "admin: unauthenticated", "request_id", rid, "err", err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="essc-admin"`)
			writeJSON(w, http.StatusUnauthorized, errBody{"invalid_token", "authentication required"})
			return
		}
		if !slices.Contains(p.Scopes, scope) {
			h.log.InfoContext(ctx, "admin: missing scope", "request_id", rid, "client_id", p.ClientID, "scope", scope)
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="essc-admin", error="insufficient_scope", scope=%q`, scope))
			writeJSON(w, http.StatusForbidden, errBody{"insufficient_scope", "the token lacks the scope " + scope})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBody)
		if err := fn(w, r, p); err != nil {
			h.fail(w, r, err)
		}
	})
}

func requestID(r *http.Request) string {
	if v := r.Header.Get("X-Request-Id"); v != "" && len(v) <= 64 && strings.IndexFunc(v, func(c rune) bool {
		return !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_' || c == '.')
	}) < 0 {
		return v
	}
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type errBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// Request decoding errors (mapped to 400/413 by fail).
var (
	errBadJSON   = errors.New("admin: malformed JSON body")
	errTooLarge  = errors.New("admin: body too large")
	errBadParam  = errors.New("admin: bad query parameter")
	errBadAction = errors.New("admin: unknown action")
)

// wireErrors is THE mapping of errors to HTTP answers: fixed texts only.
var wireErrors = []struct {
	err    error
	status int
	body   errBody
}{
	{errTooLarge, http.StatusRequestEntityTooLarge, errBody{"invalid_request", "request body too large"}},
	{errBadJSON, http.StatusBadRequest, errBody{"invalid_request", "the body must be one JSON object with known fields only"}},
	{errBadParam, http.StatusBadRequest, errBody{"invalid_request", "invalid query parameter"}},
	{errBadAction, http.StatusNotFound, errBody{"not_found", "no such action"}},
	{card.ErrUnavailable, http.StatusServiceUnavailable, errBody{"temporarily_unavailable", "the registry is temporarily unavailable, retry later"}},
	{storage.ErrUnavailable, http.StatusServiceUnavailable, errBody{"temporarily_unavailable", "the registry is temporarily unavailable, retry later"}},
	{card.ErrInvalidSSN, http.StatusBadRequest, errBody{"invalid_request", "invalid social security number"}},
	{card.ErrInvalidCardNumber, http.StatusBadRequest, errBody{"invalid_request", "invalid card number (9 characters A-Z 0-9)"}},
	{card.ErrInvalidRegion, http.StatusBadRequest, errBody{"invalid_request", "invalid region code (6 digits)"}},
	{card.ErrInvalidName, http.StatusBadRequest, errBody{"invalid_request", "invalid name"}},
	{card.ErrInvalidRequest, http.StatusBadRequest, errBody{"invalid_request", "invalid request"}},
	{card.ErrNotFound, http.StatusNotFound, errBody{"not_found", "no such record"}},
	{card.ErrConflict, http.StatusConflict, errBody{"conflict", "the record was changed by someone else; reload and retry"}},
	{card.ErrForbiddenTransition, http.StatusConflict, errBody{"invalid_state", "the action is not allowed in the card's current state"}},
	{card.ErrExists, http.StatusConflict, errBody{"already_exists", "the record already exists"}},
	{card.ErrMismatch, http.StatusUnprocessableEntity, errBody{"identity_mismatch", "the identity data does not match the registered holder"}},
}

// fail writes the fixed answer for err and logs the detail with the request id.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	rid, _ := r.Context().Value(ctxKey{}).(string)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = fmt.Errorf("%w: %w", errTooLarge, err)
	}
	if errors.Is(err, ErrInvalidClient) {
		// Client validation messages name fields, never secrets: safe and
		// useful to the operator.
		h.log.InfoContext(r.Context(), "admin: request refused", "request_id", rid, "err", err)
		writeJSON(w, http.StatusBadRequest, errBody{"invalid_client_metadata", strings.ReplaceAll(err.Error(), ErrInvalidClient.Error()+": ", "")})
		return
	}
	for _, m := range wireErrors {
		if errors.Is(err, m.err) {
			lvl := slog.LevelInfo
			if m.status >= 500 {
				lvl = slog.LevelError
			}
			h.log.Log(r.Context(), lvl, "admin: request failed", "request_id", rid, "status", m.status, "err", err)
			writeJSON(w, m.status, m.body)
			return
		}
	}
	h.log.ErrorContext(r.Context(), "admin: internal error", "request_id", rid, "err", err)
	writeJSON(w, http.StatusInternalServerError, errBody{"server_error", "internal error; quote the request id"})
}

func unavailable(err error) bool {
	return errors.Is(err, storage.ErrUnavailable) || errors.Is(err, card.ErrUnavailable)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads exactly one JSON object with known fields only. An empty
// body is allowed when allowEmpty (actions whose only field is optional).
func decode(r *http.Request, v any, allowEmpty bool) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: %w", errTooLarge, err)
		}
		return fmt.Errorf("%w: %w", errBadJSON, err)
	}
	if allowEmpty && len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", errBadJSON, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", errBadJSON)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data", errBadJSON)
	}
	return nil
}

// ---- cards ----

// CardJSON is the wire form of a card (PII masked except the name).
type CardJSON struct {
	ID           string     `json:"id"`
	Number       string     `json:"number"`
	HolderID     string     `json:"holder_id"`
	HolderName   string     `json:"holder_name,omitempty"`
	SSNMasked    string     `json:"ssn_masked,omitempty"`
	Region       string     `json:"region"`
	IssuedOn     string     `json:"issued_on"`
	Status       string     `json:"status"`
	CancelReason string     `json:"cancel_reason,omitempty"`
	PIN          PINJSON    `json:"pin"`
	Version      int64      `json:"version"`
	ECard        *ECardJSON `json:"ecard,omitempty"`
}

// PINJSON is the PIN state an outlet sees (never the verifier).
type PINJSON struct {
	MustChange bool `json:"must_change"`
	Locked     bool `json:"locked"`
	Failures   int  `json:"failures"`
}

// ECardJSON is the live e-card summary.
type ECardJSON struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Level  int    `json:"level"`
}

// CardToJSON renders a card (holder optional, e-card optional).
func CardToJSON(c storage.Card, h *storage.Holder, e *storage.ECard) CardJSON {
	out := CardJSON{ID: c.ID, Number: c.Number, HolderID: c.HolderID, Region: c.Region, IssuedOn: c.IssuedOn.Format(time.DateOnly),
		Status: string(c.Status), CancelReason: string(c.CancelReason), Version: c.Version,
		PIN: PINJSON{MustChange: c.PIN.MustChange, Locked: c.PIN.Locked, Failures: c.PIN.Failures}}
	if h != nil {
		out.HolderName = h.Name
		out.SSNMasked = card.MaskSSN(h.SSN)
	}
	if e != nil {
		out.ECard = &ECardJSON{ID: e.ID, Status: string(e.Status), Level: e.Level}
	}
	return out
}

type issueJSON struct {
	SSN      string `json:"ssn"`
	Name     string `json:"name"`
	Number   string `json:"number"`
	Region   string `json:"region"`
	IssuedOn string `json:"issued_on,omitempty"`
}

func actor(p Principal) card.Actor { return card.Actor{ID: p.ClientID} }

func (h *Handler) issueCard(w http.ResponseWriter, r *http.Request, p Principal) error {
	var in issueJSON
	if err := decode(r, &in, false); err != nil {
		return err
	}
	req := card.IssueRequest{SSN: in.SSN, Name: in.Name, Number: in.Number, Region: in.Region}
	if in.IssuedOn != "" {
		d, err := time.Parse(time.DateOnly, in.IssuedOn)
		if err != nil {
			return fmt.Errorf("%w: issued_on", card.ErrInvalidRequest)
		}
		req.IssuedOn = d
	}
	is, err := h.cfg.Cards.IssueCard(r.Context(), actor(p), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, CardToJSON(is.Card, &is.Holder, nil))
	return nil
}

func (h *Handler) getCard(w http.ResponseWriter, r *http.Request, _ Principal) error {
	v, err := h.cfg.Cards.Card(r.Context(), r.PathValue("number"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, CardToJSON(v.Card, &v.Holder, v.ECard))
	return nil
}

type actionJSON struct {
	Version   int64  `json:"version,omitempty"`
	Reason    string `json:"reason,omitempty"`
	NewNumber string `json:"new_number,omitempty"`
	Region    string `json:"region,omitempty"`
}

func (h *Handler) cardAction(w http.ResponseWriter, r *http.Request, p Principal) error {
	action := r.PathValue("action")
	var in actionJSON
	switch action {
	case "report-loss", "unfreeze", "unlock-pin", "reset-pin", "cancel", "replace":
	default:
		return errBadAction
	}
	if err := decode(r, &in, action != "cancel" && action != "replace"); err != nil {
		return err
	}
	if (action != "cancel" && in.Reason != "") || (action != "replace" && (in.NewNumber != "" || in.Region != "")) {
		return fmt.Errorf("%w: field not valid for %s", errBadJSON, action)
	}
	ref := card.CardRef{Number: r.PathValue("number"), Version: in.Version}
	ctx, a := r.Context(), actor(p)
	var c storage.Card
	var err error
	switch action {
	case "report-loss":
		c, err = h.cfg.Cards.ReportLoss(ctx, a, ref)
	case "unfreeze":
		c, err = h.cfg.Cards.Unfreeze(ctx, a, ref)
	case "unlock-pin":
		c, err = h.cfg.Cards.UnlockPIN(ctx, a, ref)
	case "reset-pin":
		c, err = h.cfg.Cards.ResetPIN(ctx, a, ref)
	case "cancel":
		c, err = h.cfg.Cards.Cancel(ctx, a, ref, storage.CancelReason(in.Reason))
	case "replace":
		var is card.Issued
		is, err = h.cfg.Cards.Replace(ctx, a, ref, card.ReplaceRequest{NewNumber: in.NewNumber, Region: in.Region})
		if err == nil {
			writeJSON(w, http.StatusCreated, CardToJSON(is.Card, &is.Holder, nil))
			return nil
		}
	}
	if err != nil {
		return err
	}
	if action == "unlock-pin" || action == "reset-pin" {
		// The returned row predates the PIN write only in Failures/Locked;
		// re-read for an exact answer.
		if v, err := h.cfg.Cards.Card(ctx, c.Number); err == nil {
			writeJSON(w, http.StatusOK, CardToJSON(v.Card, &v.Holder, v.ECard))
			return nil
		}
	}
	writeJSON(w, http.StatusOK, CardToJSON(c, nil, nil))
	return nil
}

// ---- clients ----

// ClientJSON is the wire form of a client (never the secret hash).
type ClientJSON struct {
	ClientSpec
	Disabled bool   `json:"disabled"`
	Version  int64  `json:"version"`
	Secret   string `json:"client_secret,omitempty"` // only in the create answer
}

// ClientToJSON renders a stored client.
func ClientToJSON(c storage.Client) ClientJSON {
	return ClientJSON{ClientSpec: ClientSpec{ID: c.ID, Name: c.Name, Domain: c.Domain, Profile: c.Profile, AuthMethod: c.AuthMethod,
		JWKS: json.RawMessage(c.JWKS), RedirectURIs: c.RedirectURIs, PostLogoutRedirectURIs: c.PostLogoutRedirectURIs,
		GrantTypes: c.GrantTypes, Scopes: c.Scopes, Purposes: c.Purposes, Sector: c.Sector,
		BackchannelLogoutURI: c.BackchannelLogoutURI, WebhookURL: c.WebhookURL, RequirePAR: c.RequirePAR, IDTokenAlg: c.IDTokenAlg},
		Disabled: c.Disabled, Version: c.Version}
}

func (h *Handler) createClient(w http.ResponseWriter, r *http.Request, p Principal) error {
	var spec ClientSpec
	if err := decode(r, &spec, false); err != nil {
		return err
	}
	c, secret, err := h.cfg.Clients.Create(r.Context(), actor(p), spec)
	if err != nil {
		return err
	}
	out := ClientToJSON(c)
	out.Secret = secret
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (h *Handler) getClient(w http.ResponseWriter, r *http.Request, _ Principal) error {
	c, err := h.cfg.Clients.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ClientToJSON(c))
	return nil
}

func (h *Handler) listClients(w http.ResponseWriter, r *http.Request, _ Principal) error {
	limit, err := queryInt(r, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	cls, err := h.cfg.Clients.List(r.Context(), r.URL.Query().Get("after"), limit)
	if err != nil {
		return err
	}
	out := make([]ClientJSON, len(cls))
	for i, c := range cls {
		out[i] = ClientToJSON(c)
	}
	writeJSON(w, http.StatusOK, map[string]any{"clients": out})
	return nil
}

func (h *Handler) disableClient(w http.ResponseWriter, r *http.Request, p Principal) error {
	var in struct {
		Version int64 `json:"version,omitempty"`
	}
	if err := decode(r, &in, true); err != nil {
		return err
	}
	c, err := h.cfg.Clients.Disable(r.Context(), actor(p), r.PathValue("id"), in.Version)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ClientToJSON(c))
	return nil
}

// ---- audit ----

// AuditJSON is the wire form of an audit entry.
type AuditJSON struct {
	Seq     int64           `json:"seq"`
	At      time.Time       `json:"at"`
	Actor   string          `json:"actor"`
	Act     string          `json:"act,omitempty"`
	Action  string          `json:"action"`
	Target  string          `json:"target"`
	Details json.RawMessage `json:"details,omitempty"`
	Chain   string          `json:"chain"`
}

func (h *Handler) listAudit(w http.ResponseWriter, r *http.Request, _ Principal) error {
	after, err := queryInt(r, "after", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	es, err := h.cfg.Audit.AuditEntries(r.Context(), int64(after), limit)
	if err != nil {
		return err
	}
	out := make([]AuditJSON, len(es))
	for i, e := range es {
		out[i] = AuditJSON{Seq: e.Seq, At: e.At, Actor: e.Actor, Act: e.Act, Action: e.Action, Target: e.Target,
			Details: json.RawMessage(e.Details), Chain: hex.EncodeToString(e.Chain)}
		if len(e.Details) == 0 {
			out[i].Details = nil
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": out})
	return nil
}

func (h *Handler) verifyAudit(w http.ResponseWriter, r *http.Request, _ Principal) error {
	rep, err := h.cfg.Audit.VerifyAudit(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": rep.OK, "entries": rep.Entries, "first_bad": rep.FirstBad, "reason": rep.Reason})
	return nil
}

func queryInt(r *http.Request, name string, def, min, max int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("%w: %s", errBadParam, name)
	}
	return n, nil
}
