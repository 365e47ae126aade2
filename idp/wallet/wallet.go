package wallet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
)

var randRead = rand.Read

// Cards is the card domain the wallet drives (*card.Service implements it).
type Cards interface {
	ApplyECard(ctx context.Context, a card.Actor, r card.ApplyRequest) (card.Grant, error)
	ChangePIN(ctx context.Context, a card.Actor, number, oldPIN, newPIN string) error
	VerifyPIN(ctx context.Context, number, pin string) (card.Verified, error)
	CheckPIN(ctx context.Context, c storage.Card, pin string) error
	ReportLossByHolder(ctx context.Context, a card.Actor, holderID, number string) (storage.Card, error)
	BindDevice(ctx context.Context, a card.Actor, ecardID string, k card.DeviceKey) (storage.Device, error)
	UnbindDevice(ctx context.Context, a card.Actor, deviceID string) error
}

// QR is the app side of QR-Link v1 (*qrlogin.Service implements it).
type QR interface {
	Scan(ctx context.Context, dev qrlogin.Device, payload string) (qrlogin.ScanView, error)
	ResolveCode(ctx context.Context, dev qrlogin.Device, code string) (string, error)
	Confirm(ctx context.Context, dev qrlogin.Device, txn string, number int, a qrlogin.Approval) error
	Deny(ctx context.Context, dev qrlogin.Device, txn string) error
}

// Registry is the part of the registry the wallet reads.
type Registry interface {
	DeviceWithCard(ctx context.Context, thumbprint string) (storage.Device, storage.ECard, storage.Card, error)
	ECard(ctx context.Context, id string) (storage.ECard, error)
	Card(ctx context.Context, id string) (storage.Card, error)
	ECardWithCard(ctx context.Context, ecardID string) (storage.ECard, storage.Card, error)
	Holder(ctx context.Context, id string) (storage.Holder, error)
	LiveECardOfCard(ctx context.Context, cardID string) (storage.ECard, error)
	CardByNumber(ctx context.Context, number string) (storage.Card, error)
}

// Notice is one of the holder's sign-ins as the app lists it: "you logged
// in to X from Y at T".
type Notice struct {
	SID      string    `json:"sid"`
	ClientID string    `json:"client_id"`
	RPName   string    `json:"rp_name"`
	RPDomain string    `json:"rp_domain"`
	ACR      string    `json:"acr"`
	Browser  string    `json:"browser"`
	At       time.Time `json:"at"`
}

// Notices lists and ends the holder's sign-ins (the provider and registry
// behind an adapter in cmd/esscd).
type Notices interface {
	SignIns(ctx context.Context, holderID string) ([]Notice, error)
	// NotMe ends one sign-in: tokens revoked, back-channel logout, audited.
	// An unknown sid or one of another holder wraps storage.ErrNotFound.
	NotMe(ctx context.Context, holderID, sid string) error
}

// Certifier is the entitlement service's certification (*entitlement.Service).
type Certifier interface {
	Certify(ctx context.Context, in entitlement.CertifyInput) ([]entitlement.Certification, error)
}

// Store is the short-lived state the wallet needs (storage.Sessions has it).
type Store interface {
	storage.ReplayCache
	storage.OnceStore
	storage.RateLimiter
}

// KeySource signs e-card credentials (signing.KeySet implements it).
type KeySource interface {
	Active(alg string) (*signing.Key, error)
}

// LivenessVerifier checks face-liveness evidence for the holder of an e-card and a
// challenge (the QR transaction). The production verifier calls the face
// service; DevLiveness is for development and tests only.
type LivenessVerifier interface {
	VerifyLiveness(ctx context.Context, ecardID, challenge, evidence string) error
}

// Config configures the wallet API.
type Config struct {
	// BaseURL is the public base URL; proofs' htu must be BaseURL + path.
	BaseURL  string
	Cards    Cards
	QR       QR
	Registry Registry
	Notices  Notices // optional: without it the notice endpoints are not mounted
	// Certifier runs the pensioners' eligibility check (optional: without
	// it /wallet/v1/certify is not mounted).
	Certifier Certifier
	Store     Store
	Keys      KeySource
	Liveness  LivenessVerifier // nil: face-level confirmations are refused
	// Issuer is the gm profile issuer named in e-card credentials.
	Issuer string
	// ProofSkew bounds |now - iat| of proofs; default 60 s.
	ProofSkew time.Duration
	// CredentialTTL of e-card credentials; default 365 days.
	CredentialTTL time.Duration
	MaxBody       int64 // default 16 KiB
	// AnonymousPerIP bounds apply, PIN-change and bind requests per client
	// IP per 10 minutes (PIN spraying from one source); default 60.
	AnonymousPerIP int
	// ClientIP extracts the caller's address (trusted-proxy aware); default
	// the host of RemoteAddr.
	ClientIP func(*http.Request) string
	Now      func() time.Time
	Logger   *slog.Logger
}

// Handler serves /wallet/v1 (the e-card app API) and /verify/v1 (counter
// terminals). Every wallet request carries a device-key proof.
type Handler struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	keys deviceKeys
}

// New validates cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.BaseURL == "" || cfg.Cards == nil || cfg.QR == nil || cfg.Registry == nil ||
		cfg.Store == nil || cfg.Keys == nil || cfg.Issuer == "" {
		return nil, errors.New("wallet: BaseURL, Issuer, Cards, QR, Registry, Store and Keys are required")
	}
	if cfg.ProofSkew <= 0 {
		cfg.ProofSkew = 60 * time.Second
	}
	if cfg.CredentialTTL <= 0 {
		cfg.CredentialTTL = 365 * 24 * time.Hour
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 16 << 10
	}
	if cfg.AnonymousPerIP <= 0 {
		cfg.AnonymousPerIP = 60
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = func(r *http.Request) string {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				return r.RemoteAddr
			}
			return host
		}
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	return h, nil
}

// Mount registers the routes:
//
//	POST /wallet/v1/ecards                  apply (card no + SSN + name + PIN; proof with embedded device JWK)
//	POST /wallet/v1/pin                     change the card PIN (proof with embedded JWK or bound device)
//	POST /wallet/v1/devices                 bind another phone to the live e-card (card no + PIN; proof with its JWK)
//	POST /wallet/v1/devices/unbind          unbind a device of the same holder (e.g. a lost phone)
//	POST /wallet/v1/qr/scan                 scan a QR payload or a typed elderly-mode code
//	POST /wallet/v1/qr/confirm              confirm with the number and PIN (or liveness evidence)
//	POST /wallet/v1/qr/deny                 deny a scanned login
//	POST /wallet/v1/report-loss             report the card lost (suspends the e-card at once)
//	POST /wallet/v1/presentation-codes      a single-use 60 s code for a counter to scan
//	POST /wallet/v1/notices                 the holder's sign-ins ("you logged in to X from Y")
//	POST /wallet/v1/notices/not-me          "不是我": end one sign-in (tokens revoked, back-channel logout)
//	POST /verify/v1/presentation-codes      a counter terminal redeems a code (see Verifier)
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("POST /wallet/v1/ecards", h.anonymous(h.apply))
	mux.HandleFunc("POST /wallet/v1/pin", h.anonymous(h.changePIN))
	mux.HandleFunc("POST /wallet/v1/devices", h.anonymous(h.bindDevice))
	mux.HandleFunc("POST /wallet/v1/devices/unbind", h.device(h.unbindDevice))
	mux.HandleFunc("POST /wallet/v1/qr/scan", h.deviceAuth(h.scan, true))
	mux.HandleFunc("POST /wallet/v1/qr/confirm", h.device(h.confirm))
	mux.HandleFunc("POST /wallet/v1/qr/deny", h.device(h.deny))
	mux.HandleFunc("POST /wallet/v1/report-loss", h.device(h.reportLoss))
	mux.HandleFunc("POST /wallet/v1/presentation-codes", h.device(h.presentationCode))
	if h.cfg.Certifier != nil {
		mux.HandleFunc("POST /wallet/v1/certify", h.device(h.certify))
		mux.HandleFunc("POST /wallet/v1/certify/family", h.device(h.certifyFamily))
	}
	if h.cfg.Notices != nil {
		mux.HandleFunc("POST /wallet/v1/notices", h.device(h.notices))
		mux.HandleFunc("POST /wallet/v1/notices/not-me", h.device(h.notMe))
	}
}

// notices lists the holder's sign-ins ("you logged in to X from Y").
func (h *Handler) notices(w http.ResponseWriter, r *http.Request, c caller) {
	ns, err := h.cfg.Notices.SignIns(r.Context(), c.ECard.HolderID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"notices": ns})
}

// NotMeRequest is the body of POST /wallet/v1/notices/not-me.
type NotMeRequest struct {
	SID string `json:"sid"`
}

// notMe ends a sign-in the holder does not recognise ("不是我").
func (h *Handler) notMe(w http.ResponseWriter, r *http.Request, c caller) {
	var req NotMeRequest
	if err := decode(c.Body, &req); err != nil || req.SID == "" || len(req.SID) > 128 {
		h.fail(w, r, fmt.Errorf("%w: sid", errBadRequest))
		return
	}
	if err := h.cfg.Notices.NotMe(r.Context(), c.ECard.HolderID, req.SID); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			err = errNoSuchSignIn
		}
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ended"})
}

// caller is an authenticated wallet request.
type caller struct {
	JTI    string // the proof's single-use id (a fresh server-checked challenge)
	Device storage.Device
	ECard  storage.ECard
	Card   storage.Card
	Key    *signing.Key
	Body   []byte
}

func (c caller) qrDevice() qrlogin.Device {
	return qrlogin.Device{HolderID: c.ECard.HolderID, ECardID: c.ECard.ID, DeviceID: c.Device.ID}
}

// readBody reads the body within the size limit.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return h.readBodyLimit(w, r, h.cfg.MaxBody)
}

func (h *Handler) readBodyLimit(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge
		}
		return nil, fmt.Errorf("%w: body", errBadRequest)
	}
	return b, nil
}

// checkProof verifies the proof with key and records its jti (single use).
func (h *Handler) checkProof(ctx context.Context, r *http.Request, proof string, key *signing.Key, body []byte) (ProofClaims, error) {
	c, err := verifyProof(proof, key, r.Method, h.cfg.BaseURL+r.URL.Path, body, h.now(), h.cfg.ProofSkew)
	if err != nil {
		return c, err
	}
	first, err := h.cfg.Store.Seen(ctx, "wallet-proof", jtiKey(key.Thumbprint(), c.JTI), 2*h.cfg.ProofSkew+time.Minute)
	if err != nil {
		return c, err
	}
	if !first {
		return c, fmt.Errorf("%w: replayed jti", ErrBadProof)
	}
	return c, nil
}

// anonymous authenticates a request whose proof embeds the device JWK (the
// device is not bound yet). The key is handed to the endpoint.
func (h *Handler) anonymous(next func(w http.ResponseWriter, r *http.Request, key *signing.Key, jwk []byte, body []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// Knowledge-factor endpoints: throttle per source before any work,
		// so one address cannot spray PINs across many cards.
		d, err := h.cfg.Store.Allow(r.Context(), "wallet:anon:"+h.cfg.ClientIP(r), h.cfg.AnonymousPerIP, 10*time.Minute)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if !d.Allowed {
			w.Header().Set("Retry-After", strconv.Itoa(int(d.RetryAfter/time.Second)+1))
			h.fail(w, r, qrlogin.ErrRateLimited)
			return
		}
		body, err := h.readBody(w, r)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		proof := r.Header.Get(ProofHeader)
		hdr, err := peekHeader(proof)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if len(hdr.JWK) == 0 {
			h.fail(w, r, fmt.Errorf("%w: this endpoint needs the device JWK in the proof header", ErrBadProof))
			return
		}
		key, err := signing.ParseJWK(hdr.JWK)
		if err != nil || key.Alg() != signing.AlgSM2SM3 {
			h.fail(w, r, fmt.Errorf("%w: device key must be an SM2 JWK", ErrBadProof))
			return
		}
		if _, err := h.checkProof(r.Context(), r, proof, key, body); err != nil {
			h.fail(w, r, err)
			return
		}
		jwk, _ := json.Marshal(key.PublicJWK())
		next(w, r, key, jwk, body)
	}
}

// device authenticates a request from a bound device: kid = the device key's
// thumbprint, looked up live; the e-card and card must be active.
func (h *Handler) device(next func(w http.ResponseWriter, r *http.Request, c caller)) http.HandlerFunc {
	return h.deviceAuth(next, false)
}

// deviceAuth authenticates the device; with scanInactive a device whose
// card or e-card is no longer active still reaches next (the QR scan only):
// the QR layer then denies the scanned transaction with card_invalid, so
// the browser says why instead of waiting, and the app gets card_inactive.
func (h *Handler) deviceAuth(next func(w http.ResponseWriter, r *http.Request, c caller), scanInactive bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		body, err := h.readBody(w, r)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		proof := r.Header.Get(ProofHeader)
		hdr, err := peekHeader(proof)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if hdr.Kid == "" || len(hdr.Kid) > 128 {
			h.fail(w, r, fmt.Errorf("%w: kid", ErrBadProof))
			return
		}
		// The e-card and card come with the device; they are judged only
		// once the proof is verified.
		dev, e, c, err := h.cfg.Registry.DeviceWithCard(ctx, hdr.Kid)
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				err = fmt.Errorf("%w: unknown or unbound device", ErrBadProof)
			}
			h.fail(w, r, err)
			return
		}
		key, err := h.keys.parse(dev.PublicKeyJWK)
		if err != nil {
			h.fail(w, r, fmt.Errorf("wallet: stored device key unreadable: %w", err))
			return
		}
		claims, err := h.checkProof(ctx, r, proof, key, body)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if err := card.Usable(e.HolderID, e, c); err != nil {
			if !scanInactive {
				h.fail(w, r, fmt.Errorf("%w: %w", qrlogin.ErrHolderInactive, err))
				return
			}
		} else {
			// The QR layer's own check in this request would read the same rows.
			r = r.WithContext(qrlogin.WithHolderChecked(ctx, e.HolderID, e.ID))
		}
		next(w, r, caller{JTI: claims.JTI, Device: dev, ECard: e, Card: c, Key: key, Body: body})
	}
}

// decode parses a JSON body strictly (unknown fields and trailing data rejected).
func decode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", errBadRequest)
	}
	return nil
}

// ApplyRequest is the body of POST /wallet/v1/ecards.
type ApplyRequest struct {
	CardNumber string `json:"card_number"`
	SSN        string `json:"ssn"`
	Name       string `json:"name"`
	PIN        string `json:"pin"`
	Channel    string `json:"channel,omitempty"`
}

// ApplyResponse returns the e-card and its credential.
type ApplyResponse struct {
	ECardID    string `json:"ecard_id"`
	DeviceID   string `json:"device_id"`
	Level      int    `json:"level"`
	SSNMasked  string `json:"ssn_masked"`
	Credential string `json:"credential"` // SM2SM3 JWT, typ essc-ecard+jwt, cnf.jkt = device key
}

func (h *Handler) apply(w http.ResponseWriter, r *http.Request, key *signing.Key, jwk, body []byte) {
	var req ApplyRequest
	if err := decode(body, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if req.Channel == "" {
		req.Channel = "ecard-app"
	}
	g, err := h.cfg.Cards.ApplyECard(r.Context(), card.Actor{ID: "wallet"}, card.ApplyRequest{
		CardNumber: req.CardNumber, SSN: req.SSN, Name: req.Name, PIN: req.PIN,
		Device: card.DeviceKey{Thumbprint: key.Thumbprint(), PublicKeyJWK: jwk, Channel: req.Channel},
	})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	cred, err := h.credential(g, key)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, ApplyResponse{ECardID: g.ECard.ID, DeviceID: g.Device.ID, Level: g.ECard.Level,
		SSNMasked: g.Holder.SSNMasked, Credential: cred})
}

// credential is the SM2-signed e-card credential bound to the device key.
func (h *Handler) credential(g card.Grant, key *signing.Key) (string, error) {
	k, err := h.cfg.Keys.Active(signing.AlgSM2SM3)
	if err != nil {
		return "", err
	}
	now := h.now()
	return signing.SignClaims(k, "essc-ecard+jwt", map[string]any{
		"iss": h.cfg.Issuer, "sub": g.ECard.ID, "iat": now.Unix(), "exp": now.Add(h.cfg.CredentialTTL).Unix(),
		"jti": randomID(), "level": g.ECard.Level, "region": g.Card.Region, "ssn_masked": g.Holder.SSNMasked,
		"cnf": map[string]string{"jkt": key.Thumbprint()},
	})
}

// PINChangeRequest is the body of POST /wallet/v1/pin.
type PINChangeRequest struct {
	CardNumber string `json:"card_number"`
	OldPIN     string `json:"old_pin"`
	NewPIN     string `json:"new_pin"`
}

func (h *Handler) changePIN(w http.ResponseWriter, r *http.Request, _ *signing.Key, _, body []byte) {
	var req PINChangeRequest
	if err := decode(body, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.cfg.Cards.ChangePIN(r.Context(), card.Actor{ID: "wallet"}, req.CardNumber, req.OldPIN, req.NewPIN); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// BindRequest is the body of POST /wallet/v1/devices: the new phone proves
// possession of its key (the proof's embedded JWK) and the holder knows the
// card PIN (counted towards the lock like any PIN check).
type BindRequest struct {
	CardNumber string `json:"card_number"`
	PIN        string `json:"pin"`
	Channel    string `json:"channel,omitempty"`
}

func (h *Handler) bindDevice(w http.ResponseWriter, r *http.Request, key *signing.Key, jwk, body []byte) {
	ctx := r.Context()
	var req BindRequest
	if err := decode(body, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	v, err := h.cfg.Cards.VerifyPIN(ctx, req.CardNumber, req.PIN)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	e, err := h.cfg.Registry.LiveECardOfCard(ctx, v.Card.ID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			err = fmt.Errorf("%w: no e-card on this card", qrlogin.ErrHolderInactive)
		}
		h.fail(w, r, err)
		return
	}
	if req.Channel == "" {
		req.Channel = "ecard-app"
	}
	d, err := h.cfg.Cards.BindDevice(ctx, card.Actor{ID: e.HolderID}, e.ID,
		card.DeviceKey{Thumbprint: key.Thumbprint(), PublicKeyJWK: jwk, Channel: req.Channel})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"ecard_id": e.ID, "device_id": d.ID})
}

// UnbindRequest is the body of POST /wallet/v1/devices/unbind.
type UnbindRequest struct {
	DeviceID string `json:"device_id"`
}

func (h *Handler) unbindDevice(w http.ResponseWriter, r *http.Request, c caller) {
	var req UnbindRequest
	if err := decode(c.Body, &req); err != nil || req.DeviceID == "" {
		h.fail(w, r, fmt.Errorf("%w: device_id", errBadRequest))
		return
	}
	if err := h.cfg.Cards.UnbindDevice(r.Context(), card.Actor{ID: c.ECard.HolderID}, req.DeviceID); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "unbound"})
}

// CertifyRequest is the body of POST /wallet/v1/certify: face-liveness
// evidence whose challenge is this request's proof jti (fresh, single use).
type CertifyRequest struct {
	Liveness string `json:"liveness"`
}

// certify is the annual eligibility check in the app (method "app"): the
// holder's own face-level confirmation certifies every open entitlement.
func (h *Handler) certify(w http.ResponseWriter, r *http.Request, c caller) {
	var req CertifyRequest
	if err := decode(c.Body, &req); err != nil || req.Liveness == "" {
		h.fail(w, r, fmt.Errorf("%w: liveness", errBadRequest))
		return
	}
	certs, err := h.cfg.Certifier.Certify(r.Context(), entitlement.CertifyInput{HolderID: c.ECard.HolderID, ECardID: c.ECard.ID,
		Method: entitlement.MethodApp, ACR: qrlogin.ACRFace, AMR: []string{"hwk", "face"}, Challenge: c.JTI, LivenessEvidence: req.Liveness})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeCertifications(w, certs)
}

// FamilyCertifyRequest is the body of POST /wallet/v1/certify/family: a
// relative's app (the caller, with a registered authorisation) starts the
// check for the holder of card_number; the holder's own liveness completes
// it (evidence for the holder's e-card, challenge = this proof's jti).
type FamilyCertifyRequest struct {
	CardNumber string `json:"card_number"`
	Liveness   string `json:"liveness"`
}

func (h *Handler) certifyFamily(w http.ResponseWriter, r *http.Request, c caller) {
	ctx := r.Context()
	var req FamilyCertifyRequest
	if err := decode(c.Body, &req); err != nil || req.Liveness == "" || req.CardNumber == "" {
		h.fail(w, r, fmt.Errorf("%w: card_number and liveness", errBadRequest))
		return
	}
	principal, err := h.cfg.Registry.CardByNumber(ctx, req.CardNumber)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	e, err := h.cfg.Registry.LiveECardOfCard(ctx, principal.ID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			err = fmt.Errorf("%w: no e-card on this card", qrlogin.ErrHolderInactive)
		}
		h.fail(w, r, err)
		return
	}
	certs, err := h.cfg.Certifier.Certify(ctx, entitlement.CertifyInput{HolderID: e.HolderID, ECardID: e.ID,
		Method: entitlement.MethodFamily, ACR: qrlogin.ACRFace, AMR: []string{"hwk", "face"}, Act: c.ECard.HolderID,
		Challenge: c.JTI, LivenessEvidence: req.Liveness})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeCertifications(w, certs)
}

// writeCertifications answers what was certified (attestations go to the agencies).
func writeCertifications(w http.ResponseWriter, certs []entitlement.Certification) {
	type out struct {
		Benefit    string    `json:"benefit"`
		AgencyID   string    `json:"agency_id"`
		ValidUntil time.Time `json:"valid_until"`
	}
	res := make([]out, len(certs))
	for i, ct := range certs {
		res[i] = out{Benefit: ct.Benefit, AgencyID: ct.AgencyID, ValidUntil: ct.ValidUntil}
	}
	writeJSON(w, http.StatusOK, map[string]any{"certifications": res})
}

// ScanRequest is the body of POST /wallet/v1/qr/scan: a payload or a code.
type ScanRequest struct {
	Payload string `json:"payload,omitempty"`
	Code    string `json:"code,omitempty"`
}

func (h *Handler) scan(w http.ResponseWriter, r *http.Request, c caller) {
	var req ScanRequest
	if err := decode(c.Body, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if (req.Payload == "") == (req.Code == "") {
		h.fail(w, r, fmt.Errorf("%w: give payload or code", errBadRequest))
		return
	}
	payload := req.Payload
	if req.Code != "" {
		p, err := h.cfg.QR.ResolveCode(r.Context(), c.qrDevice(), req.Code)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		payload = p
	}
	v, err := h.cfg.QR.Scan(r.Context(), c.qrDevice(), payload)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// ConfirmRequest is the body of POST /wallet/v1/qr/confirm. The proof signs
// it with the device key: txn, number and the factor are bound together.
type ConfirmRequest struct {
	Txn      string `json:"txn"`
	Number   int    `json:"number"`
	PIN      string `json:"pin,omitempty"`
	Liveness string `json:"liveness,omitempty"` // face-service evidence, for urn:essc:acr:face
}

func (h *Handler) confirm(w http.ResponseWriter, r *http.Request, c caller) {
	ctx := r.Context()
	var req ConfirmRequest
	if err := decode(c.Body, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	var a qrlogin.Approval
	switch {
	case req.PIN != "" && req.Liveness == "":
		if err := h.cfg.Cards.CheckPIN(ctx, c.Card, req.PIN); err != nil {
			h.fail(w, r, err)
			return
		}
		a = qrlogin.Approval{ACR: qrlogin.ACRPIN, AMR: []string{"hwk", "pin"}}
	case req.Liveness != "" && req.PIN == "":
		if h.cfg.Liveness == nil {
			h.fail(w, r, errNoLiveness)
			return
		}
		if err := h.cfg.Liveness.VerifyLiveness(ctx, c.ECard.ID, req.Txn, req.Liveness); err != nil {
			h.fail(w, r, fmt.Errorf("%w: %w", errLivenessFailed, err))
			return
		}
		// The evidence travels with the approval so a certification login
		// (purpose pension_certification) can be recorded on completion.
		a = qrlogin.Approval{ACR: qrlogin.ACRFace, AMR: []string{"hwk", "face"}, Txn: req.Txn, Evidence: req.Liveness}
	default:
		h.fail(w, r, fmt.Errorf("%w: give pin or liveness", errBadRequest))
		return
	}
	a.AuthTime = h.now()
	if err := h.cfg.QR.Confirm(ctx, c.qrDevice(), req.Txn, req.Number, a); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "approved"})
}

// TxnRequest names a transaction.
type TxnRequest struct {
	Txn string `json:"txn"`
}

func (h *Handler) deny(w http.ResponseWriter, r *http.Request, c caller) {
	var req TxnRequest
	if err := decode(c.Body, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.cfg.QR.Deny(r.Context(), c.qrDevice(), req.Txn); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "denied"})
}

func (h *Handler) reportLoss(w http.ResponseWriter, r *http.Request, c caller) {
	if len(bytes.TrimSpace(c.Body)) > 0 && !bytes.Equal(bytes.TrimSpace(c.Body), []byte("{}")) {
		h.fail(w, r, fmt.Errorf("%w: no body expected", errBadRequest))
		return
	}
	if _, err := h.cfg.Cards.ReportLossByHolder(r.Context(), card.Actor{ID: c.ECard.HolderID}, c.ECard.HolderID, c.Card.Number); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "lost"})
}

func randomID() string {
	var b [16]byte
	if _, err := randRead(b[:]); err != nil {
		panic(err)
	}
	return fmt.Sprintf("%x", b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
