package idp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"

	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
)

// Login is one completed sign-in of a holder at a client: what back-channel
// and RP-initiated logout need to find and end it.
type Login = storage.SignIn

// LoginIndex records sign-ins per holder (optional port; without it logout
// only revokes by subject and sends no back-channel logout tokens).
type LoginIndex interface {
	// AddLogin records l until l.ExpiresAt.
	AddLogin(ctx context.Context, l Login) error
	// Logins returns the holder's unexpired sign-ins.
	Logins(ctx context.Context, holderID string) ([]Login, error)
	// LoginBySID returns the sign-in with this sid (ErrNotFound if none).
	LoginBySID(ctx context.Context, sid string) (Login, error)
	// DropLogin forgets one sign-in (idempotent).
	DropLogin(ctx context.Context, holderID, sid string) error
}

// MemoryLoginIndex is a single-process LoginIndex (embedded mode and
// tests). A multi-replica deployment needs a shared implementation.
type MemoryLoginIndex struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string][]Login // by holder
}

var _ LoginIndex = (*MemoryLoginIndex)(nil)

// NewMemoryLoginIndex returns an empty index using now as its clock.
func NewMemoryLoginIndex(now func() time.Time) *MemoryLoginIndex {
	if now == nil {
		now = time.Now
	}
	return &MemoryLoginIndex{now: now, m: map[string][]Login{}}
}

// AddLogin implements LoginIndex.
func (x *MemoryLoginIndex) AddLogin(_ context.Context, l Login) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	now := x.now()
	x.m[l.HolderID] = append(slices.DeleteFunc(x.m[l.HolderID], func(o Login) bool { return !o.ExpiresAt.After(now) }), l)
	return nil
}

// Logins implements LoginIndex.
func (x *MemoryLoginIndex) Logins(_ context.Context, holderID string) ([]Login, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	now := x.now()
	var out []Login
	for _, l := range x.m[holderID] {
		if l.ExpiresAt.After(now) {
			out = append(out, l)
		}
	}
	return out, nil
}

// LoginBySID implements LoginIndex (linear scan: small embedded deployments).
func (x *MemoryLoginIndex) LoginBySID(_ context.Context, sid string) (Login, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	now := x.now()
	for _, ls := range x.m {
		for _, l := range ls {
			if l.SID == sid && l.ExpiresAt.After(now) {
				return l, nil
			}
		}
	}
	return Login{}, fmt.Errorf("login %q: %w", sid, storage.ErrNotFound)
}

// DropLogin implements LoginIndex.
func (x *MemoryLoginIndex) DropLogin(_ context.Context, holderID, sid string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.m[holderID] = slices.DeleteFunc(x.m[holderID], func(l Login) bool { return l.SID == sid })
	if len(x.m[holderID]) == 0 {
		delete(x.m, holderID)
	}
	return nil
}

// RegistryLoginIndex is the LoginIndex of a multi-replica deployment: the
// sign-ins live in the durable registry, so any replica can end them.
type RegistryLoginIndex struct{ Store storage.SignIns }

var _ LoginIndex = RegistryLoginIndex{}

// AddLogin implements LoginIndex.
func (x RegistryLoginIndex) AddLogin(ctx context.Context, l Login) error {
	return x.Store.AddSignIn(ctx, l)
}

// Logins implements LoginIndex.
func (x RegistryLoginIndex) Logins(ctx context.Context, holderID string) ([]Login, error) {
	return x.Store.SignInsOf(ctx, holderID)
}

// LoginBySID implements LoginIndex.
func (x RegistryLoginIndex) LoginBySID(ctx context.Context, sid string) (Login, error) {
	return x.Store.SignIn(ctx, sid)
}

// DropLogin implements LoginIndex.
func (x RegistryLoginIndex) DropLogin(ctx context.Context, _, sid string) error {
	return x.Store.DropSignIn(ctx, sid)
}

// EndSignIn is "not me": the holder ends one of their sign-ins — its tokens
// are revoked and its client gets a back-channel logout token. A sid of
// another holder reads as unknown (storage.ErrNotFound).
func (p *Provider) EndSignIn(ctx context.Context, holderID, sid string) error {
	if p.cfg.Logins == nil {
		return fmt.Errorf("idp: no login index: %w", storage.ErrNotFound)
	}
	l, err := p.cfg.Logins.LoginBySID(ctx, sid)
	if err != nil {
		return err
	}
	if l.HolderID != holderID {
		return fmt.Errorf("idp: sign-in %q: %w", sid, storage.ErrNotFound)
	}
	return p.endLogin(ctx, l, true)
}

// logoutEvent is the events member of a logout token (Back-Channel Logout 1.0 §2.4).
const logoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// LogoutToken returns the signed logout_token for one sign-in.
func (p *Provider) LogoutToken(l Login) (string, error) {
	pr := p.profile(l.Profile)
	if pr == nil {
		return "", fmt.Errorf("idp: login of unknown profile %q", l.Profile)
	}
	key, err := p.cfg.Keys.Active(pr.alg)
	if err != nil {
		return "", err
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	now := p.now()
	return signing.SignClaims(key, "logout+jwt", map[string]any{
		"iss": pr.issuer, "aud": l.ClientID, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(jti[:]), "sub": l.Subject, "sid": l.SID,
		"events": map[string]any{logoutEvent: map[string]any{}},
	})
}

// sendLogout POSTs a logout token to the client's back-channel logout URI.
func (p *Provider) sendLogout(ctx context.Context, l Login) error {
	c, err := p.clients.get(ctx, l.ClientID)
	if err != nil {
		return err
	}
	if c.rec.BackchannelLogoutURI == "" {
		return nil
	}
	tok, err := p.LogoutToken(l)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.rec.BackchannelLogoutURI,
		strings.NewReader(url.Values{"logout_token": {tok}}.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("back-channel logout to %s: status %d", l.ClientID, resp.StatusCode)
	}
	return nil
}

// endLogin revokes the tokens of one sign-in, notifies its client over the
// back channel (when notify) and forgets it. Delivery failures are logged:
// the tokens are revoked either way.
func (p *Provider) endLogin(ctx context.Context, l Login, notify bool) error {
	if pr := p.profile(l.Profile); pr != nil && l.RequestID != "" {
		if err := pr.store.RevokeRefreshToken(ctx, l.RequestID); err != nil && !errors.Is(err, fosite.ErrNotFound) {
			return err
		}
		if err := pr.store.RevokeAccessToken(ctx, l.RequestID); err != nil && !errors.Is(err, fosite.ErrNotFound) {
			return err
		}
	}
	if notify {
		if err := p.sendLogout(ctx, l); err != nil {
			if isUnavailable(err) {
				return err
			}
			p.log.WarnContext(ctx, "back-channel logout not delivered", "client", l.ClientID, "err", err)
		}
	}
	return p.cfg.Logins.DropLogin(ctx, l.HolderID, l.SID)
}

// BackchannelLogout ends every sign-in of holderID: revokes all its tokens
// (by subject when the session store supports it, and per sign-in) and sends
// a logout token to every client with a back-channel logout URI. It is
// idempotent; store outages are returned (the caller retries).
func (p *Provider) BackchannelLogout(ctx context.Context, holderID string) error {
	if r, ok := p.cfg.Sessions.(storage.SubjectRevoker); ok {
		if _, err := r.RevokeSubject(ctx, SubjectHolderPrefix+holderID, ""); err != nil {
			return err
		}
	}
	if p.cfg.Logins == nil {
		return nil
	}
	logins, err := p.cfg.Logins.Logins(ctx, holderID)
	if err != nil {
		return err
	}
	for _, l := range logins {
		if err := p.endLogin(ctx, l, true); err != nil {
			return err
		}
	}
	return nil
}

// Outbox event types consumed (written by idp/card).
const (
	eventRevokeTokens = "tokens.revoke"
	eventLogout       = "sessions.logout"
	// EventConsumer is the durable cursor name of the provider's consumer.
	EventConsumer = "idp.oidc"
)

// ConsumeEvents handles the registry outbox events after the provider's
// durable cursor, at most limit of them: "tokens.revoke" revokes every token
// of the e-card, "sessions.logout" runs BackchannelLogout for the holder.
// The cursor advances after each of those, so a crash re-delivers at most
// one handled event (handling is idempotent), and after the last event read;
// the other events (most of the outbox: card issuance and the like) are
// skipped without a write each, and a crash only makes them be read and
// skipped again. It returns how many were read.
func (p *Provider) ConsumeEvents(ctx context.Context, limit int) (int, error) {
	if p.cfg.Events == nil {
		return 0, nil
	}
	cur, err := p.cfg.Events.Cursor(ctx, EventConsumer)
	if err != nil {
		return 0, err
	}
	evs, err := p.cfg.Events.Events(ctx, cur, limit)
	if err != nil {
		return 0, err
	}
	for i, ev := range evs {
		handled := ev.Type == eventRevokeTokens || ev.Type == eventLogout
		if handled {
			if err := p.handleEvent(ctx, ev); err != nil {
				return i, fmt.Errorf("event %d (%s): %w", ev.Seq, ev.Type, err)
			}
		}
		if handled || i == len(evs)-1 {
			if err := p.cfg.Events.AdvanceCursor(ctx, EventConsumer, ev.Seq); err != nil {
				return i, err
			}
		}
	}
	return len(evs), nil
}

// handleEvent acts on a "tokens.revoke" or "sessions.logout" event.
func (p *Provider) handleEvent(ctx context.Context, ev storage.Event) error {
	var body struct {
		HolderID string `json:"holder_id"`
		ECardID  string `json:"ecard_id"`
	}
	if err := json.Unmarshal(ev.Payload, &body); err != nil || body.HolderID == "" {
		p.log.ErrorContext(ctx, "outbox event without holder_id skipped", "seq", ev.Seq, "type", ev.Type)
		return nil
	}
	switch ev.Type {
	case eventRevokeTokens:
		r, ok := p.cfg.Sessions.(storage.SubjectRevoker)
		if !ok {
			p.log.WarnContext(ctx, "session store cannot revoke by subject", "seq", ev.Seq)
			return nil
		}
		// Everything of the holder signed in with the e-card (all of the
		// holder's without one), and what a pre-2026-11-29 e-card index lists.
		if _, err := r.RevokeSubject(ctx, SubjectHolderPrefix+body.HolderID, body.ECardID); err != nil || body.ECardID == "" {
			return err
		}
		_, err := r.RevokeSubject(ctx, SubjectECardPrefix+body.ECardID, "")
		return err
	default:
		return p.BackchannelLogout(ctx, body.HolderID)
	}
}

// RunEvents calls ConsumeEvents every interval until ctx ends.
func (p *Provider) RunEvents(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for {
			n, err := p.ConsumeEvents(ctx, 100)
			if err != nil {
				p.log.WarnContext(ctx, "outbox consumer", "err", err)
				break
			}
			if n < 100 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// logout is RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
// With a valid id_token_hint (expired is fine) the sign-in it names is ended
// (its tokens revoked). post_logout_redirect_uri must exactly match one the
// client registered, else the fixed "logged out" page is shown; it is never
// redirected to without a validated client.
func (pr *profile) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil || duplicated(r.Form) != "" || len(r.Form["post_logout_redirect_uri"]) > 1 {
		pr.badPage(w, r, errors.New("logout: malformed request"))
		return
	}
	clientID := r.Form.Get("client_id")
	var sid string
	if hint := r.Form.Get("id_token_hint"); hint != "" {
		tok, err := pr.hints.Decode(ctx, hint)
		if err != nil {
			pr.badPage(w, r, fmt.Errorf("logout: id_token_hint: %w", err))
			return
		}
		aud := audiences(tok.Claims["aud"])
		if iss, _ := tok.Claims["iss"].(string); iss != pr.issuer || len(aud) == 0 || (clientID != "" && !slices.Contains(aud, clientID)) {
			pr.badPage(w, r, errors.New("logout: id_token_hint not for this issuer/client"))
			return
		}
		if clientID == "" {
			clientID = aud[0]
		}
		sid, _ = tok.Claims["sid"].(string)
	}
	target := r.Form.Get("post_logout_redirect_uri")
	if target != "" {
		c, err := pr.client(ctx, clientID)
		if err != nil || !slices.Contains(c.rec.PostLogoutRedirectURIs, target) {
			if isUnavailable(err) {
				page(w, http.StatusServiceUnavailable, msgUnavailable)
				return
			}
			pr.badPage(w, r, errors.New("logout: post_logout_redirect_uri not registered"))
			return
		}
	}
	if sid != "" && pr.p.cfg.Logins != nil {
		l, err := pr.p.cfg.Logins.LoginBySID(ctx, sid)
		if err == nil && l.ClientID == clientID {
			err = pr.p.endLogin(ctx, l, false)
		}
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			id := page(w, http.StatusServiceUnavailable, msgUnavailable)
			pr.p.log.WarnContext(ctx, "logout failed", "request_id", id, "err", err)
			return
		}
	}
	if target != "" {
		u, _ := url.Parse(target)
		if st := r.Form.Get("state"); st != "" {
			q := u.Query()
			q.Set("state", st)
			u.RawQuery = q.Encode()
		}
		http.Redirect(w, r, u.String(), http.StatusSeeOther)
		return
	}
	page(w, http.StatusOK, msgLoggedOut)
}

func audiences(v any) []string {
	switch a := v.(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, x := range a {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
