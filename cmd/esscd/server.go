package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ory/fosite"
	goredis "github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/idp"
	"github.com/essc-project/essc/idp/admin"
	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/idp/secret"
	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
	"github.com/essc-project/essc/storage/memory"
	redisstore "github.com/essc-project/essc/storage/redis"
	essql "github.com/essc-project/essc/storage/sql"
)

// app is the wired server: every backend and handler built from one
// validated FileConfig. Backends are chosen here, explicitly, and nowhere else.
type app struct {
	cfg      FileConfig
	log      *slog.Logger
	now      func() time.Time
	metrics  *metrics
	keys     *signing.KeyDir
	secrets  essql.Secrets
	reg      *essql.Store
	sessions storage.Sessions
	cards    *card.Service
	prov     *idp.Provider
	qr       *qrBridge
	// entitlements is the eligibility-check service (certification hooks).
	entitlements *entitlement.Service
	live         *wallet.LivenessVerifier // memoised liveness verifier (nil pointer: not built yet)
	trusted      []*net.IPNet             // proxies whose X-Forwarded-For is believed
	handler      http.Handler
	closers      []func() error
	// workers run until the server's context ends (outbox consumers, key rotation).
	workers []func(ctx context.Context)
}

// newApp opens the backends and wires the handlers. On error everything
// opened so far is closed.
func newApp(ctx context.Context, cfg FileConfig, log *slog.Logger) (_ *app, err error) {
	a := &app{cfg: cfg, log: log, now: time.Now, metrics: newMetrics()}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	for _, p := range cfg.HTTP.TrustedProxies {
		_, n, err := net.ParseCIDR(p)
		if err != nil {
			return nil, err
		}
		a.trusted = append(a.trusted, n)
	}
	if err := a.openKeys(); err != nil {
		return nil, err
	}
	if err := a.openRegistry(ctx); err != nil {
		return nil, err
	}
	if err := a.openSessions(ctx); err != nil {
		return nil, err
	}
	if a.cards, err = card.New(card.Config{Registry: a.reg, PINKey: a.secrets.PINKey, Now: a.now, Logger: log,
		OnPINLocked: a.metrics.pinLockouts.Inc}); err != nil {
		return nil, fmt.Errorf("card service: %w", err)
	}
	login, err := a.loginStep()
	if err != nil {
		return nil, err
	}
	a.prov, err = idp.New(idp.Config{
		BaseURL:         cfg.Issuer,
		Keys:            a.keys.Set(),
		Clients:         a.reg,
		Sessions:        a.sessions,
		Holders:         idp.RegistryDirectory{Registry: a.reg},
		Replay:          a.sessions,
		Consent:         idp.RegistryConsents{Registry: a.reg},
		Login:           login,
		Events:          a.reg,
		Logins:          idp.RegistryLoginIndex{Store: a.reg},
		GlobalSecret:    a.secrets.TokenKey,
		PairwiseKey:     a.secrets.PairwiseKey,
		ClientSecretKey: a.secrets.ClientSecretKey,
		Now:             a.now,
		Logger:          log,
	})
	if err != nil {
		return nil, fmt.Errorf("oidc provider: %w", err)
	}
	if err := a.bootstrapAdminClient(ctx); err != nil {
		return nil, err
	}
	if cfg.Demo {
		if err := a.seedDemo(ctx); err != nil {
			return nil, fmt.Errorf("demo data: %w", err)
		}
	}
	mux := http.NewServeMux()
	if err := a.mount(mux); err != nil {
		return nil, err
	}
	a.handler = limitBodies(sameOriginQR(cfg.Issuer, instrument(mux, a.metrics, log)))
	a.workers = append(a.workers,
		func(ctx context.Context) { a.prov.RunEvents(ctx, 2*time.Second) },
		func(ctx context.Context) { a.watchOutbox(ctx, 15*time.Second) },
		func(ctx context.Context) { maintainKeys(ctx, a.keys, cfg.Keys.CheckInterval, log) },
		func(ctx context.Context) { purgeSignIns(ctx, a.reg, 5*time.Minute, log) },
	)
	return a, nil
}

func (a *app) openKeys() error {
	pw, err := readSecretFile("keys.password_file", a.cfg.Keys.PasswordFile)
	if err != nil {
		return err
	}
	var password []byte
	if pw != "" {
		password = []byte(pw)
	}
	a.keys, err = signing.OpenKeyDir(a.cfg.Keys.Dir, password, signing.KeySetConfig{Now: a.now})
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	made, err := a.keys.EnsureDefaults(a.now())
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	for _, k := range made {
		a.log.Info("generated signing key", "alg", k.Alg(), "kid", k.ID(), "dir", a.cfg.Keys.Dir)
	}
	a.secrets, err = essql.LoadOrCreateSecrets(a.cfg.Keys.Dir)
	return err
}

func (a *app) openRegistry(ctx context.Context) error {
	url := a.cfg.Database.URL
	if a.cfg.Database.URLFile != "" {
		var err error
		if url, err = readSecretFile("database.url_file", a.cfg.Database.URLFile); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(a.cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	reg, err := essql.Open(ctx, essql.Config{URL: url, Secrets: a.secrets, Now: a.now, Logger: a.log, MaxOpenConns: a.cfg.Database.MaxOpenConns})
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	a.reg = reg
	a.closers = append(a.closers, reg.Close)
	return nil
}

// lookupClient resolves stored requests' clients once the provider exists
// (the session store is built before the provider, which needs it).
func (a *app) lookupClient(ctx context.Context, id string) (fosite.Client, error) {
	if a.prov == nil {
		return nil, fmt.Errorf("esscd: provider not ready: %w", storage.ErrUnavailable)
	}
	return a.prov.LookupClient(ctx, id)
}

func (a *app) openSessions(ctx context.Context) error {
	if !a.cfg.RedisEnabled() {
		s, err := memory.New(memory.Config{Now: a.now, Lookup: a.lookupClient, NewSession: idp.NewSession, Subjects: idp.TokenSubjects, Logger: a.log})
		if err != nil {
			return err
		}
		a.sessions = s
		a.log.Info("sessions in memory (embedded default): they do not survive a restart")
		return nil
	}
	client, err := a.redisClient()
	if err != nil {
		return err
	}
	a.closers = append(a.closers, client.Close)
	s, err := redisstore.New(redisstore.Config{Client: client, Prefix: a.cfg.Redis.Prefix, Now: a.now,
		Lookup: a.lookupClient, NewSession: idp.NewSession, Subjects: idp.TokenSubjects, Logger: a.log})
	if err != nil {
		return err
	}
	a.closers = append(a.closers, s.Close)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.LoadScripts(pctx); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	a.sessions = s
	return nil
}

// redisClient builds a single-node, Sentinel or Cluster client.
func (a *app) redisClient() (goredis.UniversalClient, error) {
	rc := a.cfg.Redis
	password, err := readSecretFile("redis.password_file", rc.PasswordFile)
	if err != nil {
		return nil, err
	}
	if rc.URL != "" {
		opt, err := goredis.ParseURL(rc.URL)
		if err != nil {
			return nil, fmt.Errorf("redis.url: %w", err)
		}
		if password != "" {
			opt.Password = password
		}
		return goredis.NewClient(opt), nil
	}
	return goredis.NewUniversalClient(&goredis.UniversalOptions{
		Addrs:         rc.Addrs,
		MasterName:    rc.MasterName,
		IsClusterMode: rc.Cluster,
		Password:      password,
		DB:            rc.DB,
	}), nil
}

// mount registers every endpoint family; each mounts its own routes.
func (a *app) mount(mux *http.ServeMux) error {
	a.prov.Mount(mux)
	a.qr.h.Mount(mux)
	if err := a.mountEntitlement(mux); err != nil { // before the wallet: it certifies through it
		return err
	}
	if err := a.mountWallet(mux); err != nil {
		return err
	}
	if a.cfg.Demo {
		a.mountDemo(mux)
	}
	clients, err := admin.NewClients(a.reg, secret.Hasher{Key: a.secrets.ClientSecretKey}, a.now)
	if err != nil {
		return err
	}
	adm, err := admin.New(admin.Config{Cards: a.cards, Clients: clients, Audit: a.reg, Auth: bearerAuth{a.prov}, Logger: a.log})
	if err != nil {
		return err
	}
	adm.Mount(mux)

	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	if a.cfg.MetricsEnabled() {
		mux.Handle("GET /metrics", a.metrics.handler())
	}
	if a.cfg.Observability.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return nil
}

// httpServer is the server esscd runs: its limits (header size, slow
// clients) come from the configuration. Requests' contexts derive from ctx.
func (a *app) httpServer(ctx context.Context, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: a.cfg.HTTP.ReadHeaderTimeout,
		ReadTimeout:       a.cfg.HTTP.ReadTimeout,
		// No WriteTimeout: SSE streams are long-lived; handlers bound their own work.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: maxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:    func(net.Listener) context.Context { return ctx },
	}
}

// maxHeaderBytes bounds request line and headers (larger: 431).
const maxHeaderBytes = 32 << 10

// maxFormBody bounds the bodies of the OAuth endpoints (token, PAR,
// revocation, introspection, logout, userinfo, authorize by POST) and of
// the browser's QR endpoints, whose handlers parse forms: net/http's
// ParseForm alone would read 10 MB. The JSON APIs bound their own bodies.
const maxFormBody = 64 << 10

// limitBodies caps the request bodies of the form endpoints; reading past
// the cap fails (the endpoint answers invalid_request) and closes the
// connection.
func limitBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/gm")
		if strings.HasPrefix(p, "/oauth2/") || p == "/userinfo" || strings.HasPrefix(r.URL.Path, "/qr/") {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
		}
		next.ServeHTTP(w, r)
	})
}

// sameOriginQR refuses (403) requests to the browser's QR transaction
// endpoints (poll, events, collect, cancel, restart) that the browser marks
// as coming from another site: Sec-Fetch-Site other than same-origin or none
// (a typed URL), or an Origin other than the issuer's (an opaque "null"
// leaves it to Sec-Fetch-Site). The binding cookie is
// SameSite=Strict, so browsers do not attach it to such requests; this is
// the second line for those that would, and for a sibling site (same-site).
func sameOriginQR(issuer string, next http.Handler) http.Handler {
	own := webOrigin(issuer)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, qrlogin.Base) {
			site := r.Header.Get("Sec-Fetch-Site")
			origin := r.Header.Get("Origin")
			// "null" is what Chromium sends for the login page's own form
			// posts (Referrer-Policy: no-referrer): Sec-Fetch-Site decides.
			if (site != "" && site != "same-origin" && site != "none") || (origin != "" && origin != "null" && webOrigin(origin) != own) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Cache-Control", "no-store")
				w.WriteHeader(http.StatusForbidden)
				io.WriteString(w, `{"error":"cross_site_request","message":"请在登录页面中完成登录"}`+"\n")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// webOrigin is the ASCII serialisation of u's origin (RFC 6454:
// scheme://host[:port], lower case, default port dropped); "" when u is not
// an absolute http(s) URL (an opaque "null" origin never matches).
func webOrigin(u string) string {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return ""
	}
	host, port := strings.ToLower(p.Hostname()), p.Port()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port == "" || (p.Scheme == "http" && port == "80") || (p.Scheme == "https" && port == "443") {
		return p.Scheme + "://" + host
	}
	return p.Scheme + "://" + host + ":" + port
}

// readyz answers 200 only when both the registry and the session store answer.
func (a *app) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := map[string]string{"registry": "ok", "sessions": "ok"}
	code := http.StatusOK
	if err := a.reg.Ping(ctx); err != nil {
		status["registry"], code = "unavailable", http.StatusServiceUnavailable
		a.metrics.storeErrors.WithLabelValues("registry").Inc()
		a.log.WarnContext(ctx, "readyz: registry", "err", err)
	}
	if err := a.sessions.Ping(ctx); err != nil {
		status["sessions"], code = "unavailable", http.StatusServiceUnavailable
		a.metrics.storeErrors.WithLabelValues("sessions").Inc()
		a.log.WarnContext(ctx, "readyz: sessions", "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(status)
}

// bearerAuth adapts the provider's token check to the admin API's Authenticator.
type bearerAuth struct{ prov *idp.Provider }

func (b bearerAuth) Authenticate(r *http.Request) (admin.Principal, error) {
	id, scopes, err := b.prov.Authenticate(r)
	if err != nil {
		if errors.Is(err, storage.ErrUnavailable) {
			return admin.Principal{}, err
		}
		return admin.Principal{}, fmt.Errorf("%w: %w", admin.ErrUnauthenticated, err)
	}
	return admin.Principal{ClientID: id, Scopes: scopes}, nil
}

// adminCredentials is the 0600 file the bootstrap admin client is written to.
type adminCredentials struct {
	ClientID      string   `json:"client_id"`
	ClientSecret  string   `json:"client_secret"`
	TokenEndpoint string   `json:"token_endpoint"`
	Scopes        []string `json:"scopes"`
}

const bootstrapAdminID = "essc-admin"

// bootstrapAdminClient creates the operators' first admin client on first
// start and writes its credentials 0600 under the data directory. Later
// starts leave it alone (an operator may have disabled or rotated it).
func (a *app) bootstrapAdminClient(ctx context.Context) error {
	path := filepath.Join(a.cfg.Data, "admin-client.json")
	if _, err := a.reg.Client(ctx, bootstrapAdminID); err == nil {
		return nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("bootstrap admin client: %w", err)
	}
	if a.cfg.Mode == ModeProduction {
		a.log.Warn("no admin client: create one with esscctl clients add (production does not bootstrap default admin credentials)")
		return nil
	}
	clients, err := admin.NewClients(a.reg, secret.Hasher{Key: a.secrets.ClientSecretKey}, a.now)
	if err != nil {
		return err
	}
	scopes := []string{admin.ScopeCards, admin.ScopeClients, admin.ScopeAudit}
	_, plain, err := clients.Create(ctx, card.Actor{ID: "esscd-bootstrap"}, admin.ClientSpec{
		ID: bootstrapAdminID, Name: "essc 管理客户端", Domain: "localhost", Profile: "intl",
		AuthMethod: "client_secret_basic", GrantTypes: []string{"client_credentials"}, Scopes: scopes,
	})
	if errors.Is(err, card.ErrExists) {
		return nil // another replica bootstrapped it at the same moment
	}
	if err != nil {
		return fmt.Errorf("bootstrap admin client: %w", err)
	}
	b, _ := json.MarshalIndent(adminCredentials{ClientID: bootstrapAdminID, ClientSecret: plain,
		TokenEndpoint: a.cfg.Issuer + "/oauth2/token", Scopes: scopes}, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("bootstrap admin client: %w", err)
	}
	a.log.Info("bootstrapped admin client", "client_id", bootstrapAdminID, "credentials", path)
	return nil
}

// outboxConsumers are the durable outbox cursors whose lag is exported.
var outboxConsumers = []string{"idp.oidc"}

// watchOutbox exports, every interval, how many outbox events each consumer
// has not processed yet (capped at 10,000 per read).
func (a *app) watchOutbox(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		for _, c := range outboxConsumers {
			cur, err := a.reg.Cursor(ctx, c)
			if err == nil {
				var evs []storage.Event
				if evs, err = a.reg.Events(ctx, cur, 10000); err == nil {
					a.metrics.outboxDepth.WithLabelValues(c).Set(float64(len(evs)))
				}
			}
			if err != nil && ctx.Err() == nil {
				a.metrics.storeErrors.WithLabelValues("registry").Inc()
				a.log.WarnContext(ctx, "outbox lag", "consumer", c, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close releases the backends in reverse order of opening.
func (a *app) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	return errors.Join(errs...)
}

// purgeSignIns removes expired sign-ins every interval (they already read
// as absent; this keeps the table to the live ones). Every replica runs it;
// the deletes are idempotent.
func purgeSignIns(ctx context.Context, s storage.SignIns, every time.Duration, log *slog.Logger) {
	onTick(ctx, every, func(time.Time) {
		if n, err := s.PurgeExpiredSignIns(ctx); err != nil {
			log.WarnContext(ctx, "purge expired sign-ins", "err", err)
		} else if n > 0 {
			log.InfoContext(ctx, "purged expired sign-ins", "count", n)
		}
	})
}

// onTick calls fn every interval until ctx ends.
func onTick(ctx context.Context, every time.Duration, fn func(now time.Time)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			fn(now)
		}
	}
}
