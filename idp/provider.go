package idp

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/ory/fosite"

	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
)

// Profile names (storage.Client.Profile values).
const (
	ProfileIntl = storage.ProfileIntl
	ProfileGM   = storage.ProfileGM
)

// Lifetimes are the default token lifetimes; a client's storage.Lifetimes
// override them field by field.
type Lifetimes struct {
	Code         time.Duration // default 60 s
	AccessToken  time.Duration // default 10 min
	IDToken      time.Duration // default 10 min
	RefreshToken time.Duration // default 12 h (absolute)
	PAR          time.Duration // request_uri lifetime, default 60 s
}

func (l *Lifetimes) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.Code, 60*time.Second)
	def(&l.AccessToken, 10*time.Minute)
	def(&l.IDToken, 10*time.Minute)
	def(&l.RefreshToken, 12*time.Hour)
	def(&l.PAR, 60*time.Second)
}

// Config configures a Provider. Every interface field is required except
// Consent (nil: consent is asked every time it is needed and never
// remembered), Events (nil: no outbox consumer), Logins and HTTPClient.
type Config struct {
	// BaseURL is the intl issuer, e.g. https://idp.example.gov.cn (no
	// trailing slash); the gm issuer is BaseURL + "/gm".
	BaseURL  string
	Keys     KeySource
	Clients  ClientSource
	Sessions SessionStore
	Holders  HolderDirectory
	Replay   ReplayCache
	Consent  ConsentStore
	Login    LoginStep
	Events   EventSource
	// Logins records sign-ins for logout (nil: logout revokes by subject
	// only and sends no back-channel logout tokens).
	Logins LoginIndex
	// GlobalSecret keys the HMAC of codes and refresh tokens and the
	// integrity of pending login state (≥ 32 bytes).
	GlobalSecret []byte
	// PairwiseKey keys the pairwise subjects (≥ 32 bytes, never rotated:
	// rotating it changes every subject).
	PairwiseKey []byte
	// ClientSecretKey keys client secret hashes (idp/secret, ≥ 32 bytes).
	ClientSecretKey []byte
	Lifetimes       Lifetimes
	// ClientCacheTTL bounds how long a client record is reused (default 5 s;
	// negative disables the cache).
	ClientCacheTTL time.Duration
	// HTTPClient sends back-channel logout tokens (default: 5 s timeout).
	HTTPClient *http.Client
	Now        func() time.Time
	Logger     *slog.Logger
}

// Provider is the OpenID provider: two fosite providers (intl, gm) sharing
// the stores, the login step and the error mapping.
type Provider struct {
	cfg     Config
	clients *clientCache
	intl    *profile
	gm      *profile
	log     *slog.Logger
	now     func() time.Time
	// pendingKey tags sealed pending authorize requests (seal, open),
	// derived once from GlobalSecret.
	pendingKey []byte
}

// New validates cfg and builds both profiles.
func New(cfg Config) (*Provider, error) {
	var errs []error
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.HasSuffix(cfg.BaseURL, "/") || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("BaseURL %q: want an absolute http(s) URL without trailing slash", cfg.BaseURL))
	}
	req := map[string]bool{
		"Keys": cfg.Keys != nil, "Clients": cfg.Clients != nil, "Sessions": cfg.Sessions != nil,
		"Holders": cfg.Holders != nil, "Replay": cfg.Replay != nil, "Login": cfg.Login != nil,
	}
	for _, name := range []string{"Keys", "Clients", "Sessions", "Holders", "Replay", "Login"} {
		if !req[name] {
			errs = append(errs, fmt.Errorf("%s is required", name))
		}
	}
	for name, k := range map[string][]byte{"GlobalSecret": cfg.GlobalSecret, "PairwiseKey": cfg.PairwiseKey, "ClientSecretKey": cfg.ClientSecretKey} {
		if len(k) < 32 {
			errs = append(errs, fmt.Errorf("%s must be at least 32 bytes", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("idp: config: %w", err)
	}
	cfg.Lifetimes.defaults()
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	ttl := cfg.ClientCacheTTL
	if ttl == 0 {
		ttl = 5 * time.Second
	}
	p := &Provider{cfg: cfg, log: cfg.Logger, now: cfg.Now, pendingKey: derive(cfg.GlobalSecret, "essc-pending-authorize")}
	p.clients = &clientCache{src: cfg.Clients, ttl: ttl, now: cfg.Now, def: cfg.Lifetimes, m: map[string]cachedClient{}}
	p.intl = newProfile(p, ProfileIntl, cfg.BaseURL, "", signing.AlgES256, []string{signing.AlgES256, signing.AlgRS256})
	p.gm = newProfile(p, ProfileGM, cfg.BaseURL+"/gm", "/gm", signing.AlgSM2SM3, []string{signing.AlgSM2SM3})
	return p, nil
}

// Issuer returns the issuer of profile (ProfileIntl or ProfileGM).
func (p *Provider) Issuer(profile string) string {
	if profile == ProfileGM {
		return p.gm.issuer
	}
	return p.intl.issuer
}

func (p *Provider) profile(name string) *profile {
	switch name {
	case ProfileIntl:
		return p.intl
	case ProfileGM:
		return p.gm
	}
	return nil
}

// Mount registers every endpoint of both profiles on mux: the intl profile
// under "/" and the gm profile under "/gm/" (paths in docs/PROTOCOL.md).
func (p *Provider) Mount(mux *http.ServeMux) {
	p.intl.mount(mux)
	p.gm.mount(mux)
}

// derive returns HMAC-SM3(secret, label): independent keys per use.
func derive(secret []byte, label string) []byte {
	m := hmac.New(sm3.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// LookupClient resolves a client of either profile for a session store that
// rebuilds stored requests (storage.LookupClient). Unknown or disabled
// clients wrap storage.ErrNotFound, so their stored tokens read as not found.
func (p *Provider) LookupClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := p.clients.get(ctx, id)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Subject index keys for storage.SubjectRevoker.RevokeSubject.
const (
	SubjectHolderPrefix = "holder:"
	// SubjectECardPrefix named a second index per e-card, written until
	// 2026-11-29; an e-card event still revokes what such an index lists
	// (it expires with the index horizon).
	SubjectECardPrefix = "ecard:"
)

// TokenSubjects is the storage.SubjectsFunc of essc sessions: the tokens of a
// holder session are indexed under "holder:<id>" tagged with the e-card, so
// "not me", a holder event or an e-card event (by tag) revokes them
// (client_credentials tokens: none).
func TokenSubjects(r fosite.Requester) []storage.Subject {
	if r == nil {
		return nil
	}
	s, ok := r.GetSession().(*Session)
	if !ok || s.HolderID == "" {
		return nil
	}
	return []storage.Subject{{Key: SubjectHolderPrefix + s.HolderID, Tag: s.ECardID}}
}
