package idp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm3"
	json "github.com/goccy/go-json" // pendingAuth only: a record essc sealed itself (docs/ARCHITECTURE.md)
	"github.com/ory/fosite"

	"github.com/essc-project/essc/storage"
)

// singleParams may appear at most once in an authorize or PAR request
// (RFC 6749 §3.1: parameters MUST NOT be included more than once).
var singleParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "request_uri", "max_age", "acr_values", "prompt",
	"response_mode", "login_hint", "id_token_hint", "ui_locales", "purpose", "claims", "request"}

// strippedParams never travel from a PAR body into the pending authorize state.
var strippedParams = []string{"client_assertion", "client_assertion_type", "client_secret", "request_uri"}

func duplicated(form url.Values) string {
	for _, p := range singleParams {
		if len(form[p]) > 1 {
			return p
		}
	}
	return ""
}

// checkPKCE enforces S256 with a well-formed challenge (RFC 7636 §4.2) before
// the browser is handed to the login step; fosite enforces it again.
func checkPKCE(form url.Values) error {
	if m := form.Get("code_challenge_method"); m != "S256" {
		return fosite.ErrInvalidRequest.WithHint("PKCE with code_challenge_method S256 is required.")
	}
	ch := form.Get("code_challenge")
	if len(ch) != 43 {
		return fosite.ErrInvalidRequest.WithHint("The code_challenge must be 43 base64url characters.")
	}
	for i := 0; i < len(ch); i++ {
		c := ch[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fosite.ErrInvalidRequest.WithHint("The code_challenge must be base64url.")
		}
	}
	return nil
}

// checkRequest applies the essc policy on a validated (merged) request form.
func checkRequest(form url.Values, c *client) error {
	if err := checkPKCE(form); err != nil {
		return err
	}
	if !slices.Contains(c.rec.RedirectURIs, form.Get("redirect_uri")) {
		// fosite tolerates loopback port changes; we require exact match.
		return fosite.ErrInvalidRequest.WithHint("The redirect_uri must exactly match a registered one.")
	}
	if !slices.Contains(strings.Fields(form.Get("scope")), ScopeOpenID) {
		return fosite.ErrInvalidScope.WithHint("The openid scope is required.")
	}
	for _, v := range strings.Fields(form.Get("acr_values")) {
		if acrRank(v) < 0 {
			return fosite.ErrInvalidRequest.WithHintf("Unsupported acr value %q.", v)
		}
	}
	if ma := form.Get("max_age"); ma != "" {
		if n, err := strconv.ParseInt(ma, 10, 32); err != nil || n < 0 {
			return fosite.ErrInvalidRequest.WithHint("max_age must be a non-negative integer.")
		}
	}
	if form.Get("request") != "" {
		return fosite.ErrRequestNotSupported
	}
	if pu := form.Get("purpose"); pu != "" && !slices.Contains(c.rec.Purposes, pu) {
		return fosite.ErrInvalidRequest.WithHint("The purpose is not registered for this client.")
	}
	return nil
}

// authorize is the authorization endpoint (OpenID Connect Core §3.1.2).
func (pr *profile) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		pr.badPage(w, r, fmt.Errorf("parse form: %w", err))
		return
	}
	if p := duplicated(r.Form); p != "" {
		pr.badPage(w, r, fmt.Errorf("duplicated parameter %q", p))
		return
	}
	ar, err := pr.oauth.NewAuthorizeRequest(ctx, r)
	if err != nil {
		pr.authorizeError(w, r, ar, err)
		return
	}
	c, ok := ar.GetClient().(*client)
	if !ok {
		pr.authorizeError(w, r, nil, errors.New("client of unexpected type"))
		return
	}
	form := ar.GetRequestForm()
	if !slices.Contains(c.rec.RedirectURIs, form.Get("redirect_uri")) {
		pr.badPage(w, r, fmt.Errorf("redirect_uri %q not registered exactly", form.Get("redirect_uri")))
		return
	}
	viaPAR := strings.HasPrefix(r.Form.Get("request_uri"), pr.fc.GetPushedAuthorizeRequestURIPrefix(ctx))
	if c.rec.RequirePAR && !viaPAR {
		pr.authorizeError(w, r, ar, fosite.ErrInvalidRequest.WithHint("This client must use pushed authorization requests."))
		return
	}
	if err := checkRequest(form, c); err != nil {
		pr.authorizeError(w, r, ar, err)
		return
	}
	if form.Get("prompt") == "none" {
		// No passive login: a holder always confirms on the phone.
		pr.authorizeError(w, r, ar, fosite.ErrLoginRequired)
		return
	}
	scopes := strings.Fields(form.Get("scope"))
	pending := pendingAuth{Profile: pr.name, Form: map[string][]string{}, RequestedAt: pr.p.now().UTC().Truncate(time.Second)}
	for k, v := range form {
		if !slices.Contains(strippedParams, k) {
			pending.Form[k] = slices.Clone(v)
		}
	}
	sealed, err := pr.p.seal(pending)
	if err != nil {
		pr.authorizeError(w, r, ar, err)
		return
	}
	maxAge := time.Duration(-1)
	if ma := form.Get("max_age"); ma != "" {
		n, _ := strconv.Atoi(ma)
		maxAge = time.Duration(n) * time.Second
	}
	// Consent is decided with the holder on the phone; the login step
	// computes NeedConsent per holder once it knows who scanned.
	pr.p.cfg.Login.StartLogin(w, r, LoginRequest{
		Profile:      pr.name,
		ClientID:     c.rec.ID,
		ClientName:   c.rec.Name,
		ClientDomain: c.rec.Domain,
		Scopes:       scopes,
		ACRValues:    strings.Fields(form.Get("acr_values")),
		MaxAge:       maxAge,
		Prompt:       form.Get("prompt"),
		Purpose:      form.Get("purpose"),
		RequestedAt:  pending.RequestedAt,
		Pending:      sealed,
	})
}

// NeedConsent returns the scopes of req the holder must confirm for the
// client now (essc.ssn always; others when not granted before). The login
// step calls it once it knows the holder, before asking for confirmation.
func (p *Provider) NeedConsent(ctx context.Context, holderID string, req LoginRequest) ([]string, error) {
	var granted []string
	if p.cfg.Consent != nil {
		g, err := p.cfg.Consent.Granted(ctx, holderID, req.ClientID)
		if err != nil {
			return nil, err
		}
		granted = g
	}
	return needsConsent(req.Scopes, granted), nil
}

// checkGranted is Holders.Check followed by Consent.Granted (nil without a
// consent store), in one read when the consent store can judge the e-card.
func (p *Provider) checkGranted(ctx context.Context, holderID, ecardID, clientID string) ([]string, error) {
	if cc, ok := p.cfg.Consent.(consentChecker); ok {
		return cc.CheckGranted(ctx, holderID, ecardID, clientID)
	}
	if err := p.cfg.Holders.Check(ctx, holderID, ecardID); err != nil {
		return nil, err
	}
	if p.cfg.Consent == nil {
		return nil, nil
	}
	return p.cfg.Consent.Granted(ctx, holderID, clientID)
}

// pendingAuth is the validated authorize request waiting for the login step.
type pendingAuth struct {
	Profile     string              `json:"p"`
	Form        map[string][]string `json:"f"`
	RequestedAt time.Time           `json:"t"`
}

// seal serialises pa with an HMAC-SM3 tag so a pending request cannot be
// forged or altered even if it leaves the server.
func (p *Provider) seal(pa pendingAuth) ([]byte, error) {
	b, err := json.Marshal(pa)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sm3.New, p.pendingKey)
	m.Write(b)
	return append(m.Sum(nil), b...), nil
}

var errBadPending = errors.New("idp: pending authorize request invalid")

func (p *Provider) open(sealed []byte) (pendingAuth, error) {
	var pa pendingAuth
	if len(sealed) < sm3.Size {
		return pa, errBadPending
	}
	m := hmac.New(sm3.New, p.pendingKey)
	m.Write(sealed[sm3.Size:])
	if !hmac.Equal(m.Sum(nil), sealed[:sm3.Size]) {
		return pa, errBadPending
	}
	if err := json.Unmarshal(sealed[sm3.Size:], &pa); err != nil {
		return pa, fmt.Errorf("%w: %v", errBadPending, err)
	}
	return pa, nil
}

// unmetAuthn is OpenID Connect's unmet_authentication_requirements error.
func unmetAuthn() *fosite.RFC6749Error {
	return (&fosite.RFC6749Error{
		ErrorField:       "unmet_authentication_requirements",
		DescriptionField: "The authentication performed does not meet the requested acr_values.",
		CodeField:        http.StatusBadRequest,
	})
}

// consentRequired is a fresh consent_required error.
func consentRequired() *fosite.RFC6749Error {
	return fosite.ErrConsentRequired.WithHint("The holder did not confirm every requested scope.")
}

// Complete finishes the authorize request of pending for the holder that the
// login step authenticated: it re-validates the request, enforces acr_values
// (never downgraded), max_age, the live card/e-card status and consent, and
// writes the authorization response (a redirect with the code) to w. Errors
// after the redirect URI is validated are redirected to it; any other error
// is a fixed page.
func (p *Provider) Complete(w http.ResponseWriter, r *http.Request, pending []byte, a Authentication) {
	pa, err := p.open(pending)
	if err != nil {
		p.intl.badPage(w, r, err)
		return
	}
	pr := p.profile(pa.Profile)
	if pr == nil {
		p.intl.badPage(w, r, fmt.Errorf("pending for unknown profile %q", pa.Profile))
		return
	}
	ctx := r.Context()
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, pr.issuer+"/oauth2/authorize?"+url.Values(pa.Form).Encode(), nil)
	if err != nil {
		pr.badPage(w, r, err)
		return
	}
	ar, err := pr.oauth.NewAuthorizeRequest(ctx, hr)
	if err != nil {
		pr.authorizeError(w, r, ar, err)
		return
	}
	sess, err := pr.completeSession(ctx, ar, pa, a)
	if err != nil {
		pr.authorizeError(w, r, ar, err)
		return
	}
	// The code, PKCE and OIDC records go to the store in one round trip.
	bctx, flush := storage.Batch(ctx, p.cfg.Sessions)
	resp, err := pr.oauth.NewAuthorizeResponse(bctx, ar, sess)
	if err == nil {
		err = flush(ctx)
	}
	if err != nil {
		pr.authorizeError(w, r, ar, err)
		return
	}
	if p.cfg.Logins != nil {
		c := ar.GetClient().(*client)
		l := Login{HolderID: a.HolderID, ClientID: c.rec.ID, Profile: pr.name, SID: sess.SID, Subject: sess.Subject,
			RequestID: ar.GetID(), ACR: a.ACR, Browser: a.Browser, At: a.AuthTime, ExpiresAt: p.now().Add(c.lt.RefreshToken)}
		if err := p.cfg.Logins.AddLogin(ctx, l); err != nil {
			pr.authorizeError(w, r, ar, err)
			return
		}
	}
	pr.oauth.WriteAuthorizeResponse(ctx, w, ar, resp)
}

func (pr *profile) completeSession(ctx context.Context, ar fosite.AuthorizeRequester, pa pendingAuth, a Authentication) (*Session, error) {
	c := ar.GetClient().(*client)
	form := ar.GetRequestForm()
	if err := checkRequest(form, c); err != nil {
		return nil, err
	}
	if a.HolderID == "" || a.ECardID == "" {
		return nil, fosite.ErrAccessDenied.WithHint("No holder was authenticated.")
	}
	if pu := form.Get("purpose"); pu != "" && a.Purpose != pu {
		return nil, fosite.ErrAccessDenied.WithHint("The holder confirmed another purpose.")
	}
	if !acrSatisfies(a.ACR, strings.Fields(form.Get("acr_values"))) {
		return nil, unmetAuthn()
	}
	now := pr.p.now().UTC()
	authTime := a.AuthTime.UTC().Truncate(time.Second)
	if authTime.IsZero() || authTime.After(now.Add(5*time.Second)) {
		return nil, fosite.ErrServerError.WithDebug("auth_time missing or in the future")
	}
	if ma := form.Get("max_age"); ma != "" {
		n, _ := strconv.Atoi(ma)
		if now.Sub(authTime) > time.Duration(n)*time.Second {
			return nil, fosite.ErrLoginRequired.WithHint("The authentication is older than max_age.")
		}
	}
	granted, err := pr.p.checkGranted(ctx, a.HolderID, a.ECardID, c.rec.ID)
	if err != nil {
		if errors.Is(err, ErrInactive) {
			return nil, fosite.ErrAccessDenied.WithHint("The card or e-card is not active.").WithWrap(err)
		}
		return nil, err
	}
	scopes := strings.Fields(form.Get("scope"))
	needed := needsConsent(scopes, granted)
	for _, s := range needed {
		if !slices.Contains(a.Consented, s) {
			return nil, consentRequired()
		}
	}
	// Remember what was newly consented to (never essc.ssn: it is asked
	// every time); nothing is written when it was all granted before.
	remember := slices.DeleteFunc(needed, func(s string) bool { return s == ScopeSSN })
	if pr.p.cfg.Consent != nil && len(remember) > 0 {
		if err := pr.p.cfg.Consent.Grant(ctx, a.HolderID, c.rec.ID, remember); err != nil {
			return nil, err
		}
	}
	for _, s := range scopes {
		ar.GrantScope(s)
	}
	sess := newSession(pr.name)
	sess.ClientID = c.rec.ID
	sess.HolderID = a.HolderID
	sess.ECardID = a.ECardID
	sess.Purpose = a.Purpose
	sess.Subject = PairwiseSubject(pr.p.cfg.PairwiseKey, c.sector(), a.HolderID)
	var sid [16]byte
	_, _ = rand.Read(sid[:])
	sess.SID = base64.RawURLEncoding.EncodeToString(sid[:])
	cl := sess.IDTokenClaims()
	cl.Subject = sess.Subject
	cl.Issuer = pr.issuer
	cl.AuthTime = authTime
	cl.RequestedAt = pa.RequestedAt.UTC()
	cl.AuthenticationContextClassReference = a.ACR
	cl.AuthenticationMethodsReferences = slices.Clone(a.AMR)
	cl.Extra = map[string]any{"sid": sess.SID}
	return sess, nil
}

// authorizeError answers an authorize-endpoint failure: a store outage is a
// 503 page; an error before the redirect URI was validated is a 400 page;
// otherwise the OAuth error is redirected to the validated redirect URI.
func (pr *profile) authorizeError(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, err error) {
	if isUnavailable(err) {
		id := page(w, http.StatusServiceUnavailable, msgUnavailable)
		pr.p.log.WarnContext(r.Context(), "authorize: store unavailable", "profile", pr.name, "request_id", id, "err", err)
		return
	}
	if ar == nil || !ar.IsRedirectURIValid() {
		pr.badPage(w, r, err)
		return
	}
	rfc := oauthError(err)
	pr.p.log.InfoContext(r.Context(), "authorize: error redirected", "profile", pr.name, "error", rfc.ErrorField, "debug", rfc.GetDescription(), "err", err)
	pr.oauth.WriteAuthorizeError(r.Context(), w, ar, rfc)
}

func (pr *profile) badPage(w http.ResponseWriter, r *http.Request, err error) {
	id := page(w, http.StatusBadRequest, msgBadRequest)
	pr.p.log.InfoContext(r.Context(), "authorize: rejected", "profile", pr.name, "request_id", id, "err", err)
}
