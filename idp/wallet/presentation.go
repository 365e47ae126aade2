package wallet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/storage"
)

// PresentationTTL is the life of a presentation code (展码), DESIGN.md §6.
const PresentationTTL = 60 * time.Second

var (
	errCodeUsed        = errors.New("wallet: presentation code unknown, expired or used")
	errUnauthenticated = errors.New("wallet: unauthenticated")
	errForbidden       = errors.New("wallet: missing scope")
)

// presentation is what a code stands for (stored single-use).
type presentation struct {
	HolderID string `json:"h"`
	ECardID  string `json:"e"`
}

// PresentationCode is the answer of POST /wallet/v1/presentation-codes.
type PresentationCode struct {
	Code      string    `json:"code"` // shown as a QR by the app: essc://present?c=<code>
	ExpiresAt time.Time `json:"expires_at"`
}

func (h *Handler) presentationCode(w http.ResponseWriter, r *http.Request, c caller) {
	code := randomID()
	b, _ := json.Marshal(presentation{HolderID: c.ECard.HolderID, ECardID: c.ECard.ID})
	if err := h.cfg.Store.PutOnce(r.Context(), "presentation", code, b, PresentationTTL); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, PresentationCode{Code: code, ExpiresAt: h.now().Add(PresentationTTL)})
}

// Authenticator authenticates a counter terminal (a client-credentials
// bearer token checked by the OIDC provider) and returns its scopes.
type Authenticator interface {
	Authenticate(r *http.Request) (clientID string, scopes []string, err error)
}

// Identity is the minimised, verified identity a counter receives.
type Identity struct {
	Name       string `json:"name"`
	SSNMasked  string `json:"ssn_masked"`
	CardStatus string `json:"card_status"`
	Region     string `json:"region"`
	Level      int    `json:"ecard_level"`
	VerifiedAt string `json:"verified_at"`
}

// VerifierConfig configures the counter-terminal endpoint.
type VerifierConfig struct {
	Auth     Authenticator
	Store    storage.OnceStore
	Registry Registry
	Now      func() time.Time
	Logger   *slog.Logger
}

// ScopeVerify is the scope a counter terminal's client needs.
const ScopeVerify = "essc.verify"

// Verifier serves POST /verify/v1/presentation-codes.
type Verifier struct {
	h   *Handler
	cfg VerifierConfig
}

// NewVerifier validates cfg.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Auth == nil || cfg.Store == nil || cfg.Registry == nil {
		return nil, errors.New("wallet: verifier needs Auth, Store and Registry")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Verifier{h: &Handler{log: log, now: cfg.Now}, cfg: cfg}, nil
}

// Mount registers the route.
func (v *Verifier) Mount(mux *http.ServeMux) {
	mux.HandleFunc("POST /verify/v1/presentation-codes", v.redeem)
}

// redeem takes the code once (of concurrent redemptions exactly one wins)
// and answers the holder's minimised identity after a live status check.
func (v *Verifier) redeem(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	_, scopes, err := v.cfg.Auth.Authenticate(r)
	if err != nil {
		if !errors.Is(err, storage.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", errUnauthenticated, err)
		}
		v.h.fail(w, r, err)
		return
	}
	if !slices.Contains(scopes, ScopeVerify) {
		v.h.fail(w, r, errForbidden)
		return
	}
	body, err := v.h.readBodyLimit(w, r, 1024)
	if err != nil {
		v.h.fail(w, r, err)
		return
	}
	var req struct {
		Code string `json:"code"`
	}
	if err := decode(body, &req); err != nil || len(req.Code) != 32 {
		v.h.fail(w, r, fmt.Errorf("%w: code", errBadRequest))
		return
	}
	raw, err := v.cfg.Store.TakeOnce(ctx, "presentation", req.Code)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			err = errCodeUsed
		}
		v.h.fail(w, r, err)
		return
	}
	var p presentation
	if err := json.Unmarshal(raw, &p); err != nil {
		v.h.fail(w, r, err)
		return
	}
	id, err := v.identity(ctx, p)
	if err != nil {
		v.h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, id)
}

func (v *Verifier) identity(ctx context.Context, p presentation) (Identity, error) {
	e, c, err := v.cfg.Registry.ECardWithCard(ctx, p.ECardID)
	if errors.Is(err, storage.ErrNotFound) {
		return Identity{}, fmt.Errorf("%w: e-card %q gone", qrlogin.ErrHolderInactive, p.ECardID)
	} else if err != nil {
		return Identity{}, err
	}
	if err := card.Usable(p.HolderID, e, c); err != nil {
		return Identity{}, fmt.Errorf("%w: %w", qrlogin.ErrHolderInactive, err)
	}
	hd, err := v.cfg.Registry.Holder(ctx, p.HolderID)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Name: hd.Name, SSNMasked: hd.SSNMasked, CardStatus: string(c.Status), Region: c.Region,
		Level: e.Level, VerifiedAt: v.cfg.Now().UTC().Format(time.RFC3339)}, nil
}
