package idp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
)

// profile is one issuer: its fosite provider, signer and routes.
type profile struct {
	p      *Provider
	name   string
	issuer string
	prefix string   // URL path prefix: "" or "/gm"
	alg    string   // token signing alg
	algs   []string // published algs
	fc     *fosite.Config
	oauth  fosite.OAuth2Provider
	store  *profileStore
	signer *joseSigner
	ids    map[string]*openid.DefaultStrategy // ID token strategy per alg the profile publishes
	hints  *joseSigner                        // verifies ID tokens of any of those algs (logout hints)
	codes  *oauth2.HMACSHAStrategy            // the code strategy (profileStore keys OIDC records by code signature)
}

func newProfile(p *Provider, name, issuer, prefix, alg string, algs []string) *profile {
	pr := &profile{p: p, name: name, issuer: issuer, prefix: prefix, alg: alg, algs: algs}
	lt := p.cfg.Lifetimes
	pr.fc = &fosite.Config{
		AccessTokenLifespan:            lt.AccessToken,
		RefreshTokenLifespan:           lt.RefreshToken,
		AuthorizeCodeLifespan:          lt.Code,
		IDTokenLifespan:                lt.IDToken,
		IDTokenIssuer:                  issuer,
		AccessTokenIssuer:              issuer,
		TokenURL:                       issuer + "/oauth2/token",
		GlobalSecret:                   derive(p.cfg.GlobalSecret, "essc-fosite-hmac-"+name),
		EnforcePKCE:                    true,
		EnablePKCEPlainChallengeMethod: false,
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:       fosite.DefaultAudienceMatchingStrategy,
		JWTScopeClaimKey:               jwt.JWTScopeFieldString,
		PushedAuthorizeContextLifespan: lt.PAR,
		MinParameterEntropy:            fosite.MinParameterEntropy,
		SendDebugMessagesToClients:     false,
		RefreshTokenScopes:             []string{ScopeOfflineAccess},
		ClientAuthenticationStrategy:   pr.authenticateClient,
		RedirectSecureChecker:          fosite.IsRedirectURISecureStrict,
	}
	pr.store = &profileStore{SessionStore: p.cfg.Sessions, pr: pr}
	pr.signer = &joseSigner{keys: p.cfg.Keys, alg: alg}
	pr.ids = map[string]*openid.DefaultStrategy{}
	for _, a := range algs {
		pr.ids[a] = &openid.DefaultStrategy{Signer: &joseSigner{keys: p.cfg.Keys, alg: a}, Config: pr.fc}
	}
	pr.hints = &joseSigner{keys: p.cfg.Keys, alg: alg, also: algs}
	pr.codes = compose.NewOAuth2HMACStrategy(pr.fc)
	strategy := &compose.CommonStrategy{
		CoreStrategy: &accessTokens{DefaultJWTStrategy: &oauth2.DefaultJWTStrategy{
			Signer:          pr.signer,
			HMACSHAStrategy: pr.codes,
			Config:          pr.fc,
		}, now: p.now},
		OpenIDConnectTokenStrategy: pr.ids[alg],
		Signer:                     pr.signer,
	}
	// Only the factories used (issue 5): code (+PKCE), refresh, client
	// credentials, revocation, introspection, PAR, and OpenID Connect
	// explicit flow (authorize side from fosite, ID token side our own so
	// at_hash follows the profile's hash).
	pr.oauth = compose.Compose(pr.fc, pr.store, strategy,
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2PKCEFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2TokenRevocationFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.PushedAuthorizeHandlerFactory,
		oidcAuthorizeFactory,
		pr.idTokenFactory,
	)
	return pr
}

// profileStore is the fosite storage of one profile: the shared session
// store plus clients of THIS profile only (a client of the other profile is
// not found here, so every endpoint rejects it).
type profileStore struct {
	SessionStore
	pr *profile
}

var _ fosite.Storage = (*profileStore)(nil)

// GetClient returns the client if it is registered for this profile.
func (s *profileStore) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := s.pr.client(ctx, id)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// fosite keys a code's OIDC record by the code and its code and PKCE records
// by the code's signature; the profile keys all three by the signature, so a
// session store can keep them together (redisstore: one key, one round trip
// per step of a login).

// CreateOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *profileStore) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.SessionStore.CreateOpenIDConnectSession(ctx, s.pr.codes.AuthorizeCodeSignature(ctx, code), r)
}

// GetOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *profileStore) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	return s.SessionStore.GetOpenIDConnectSession(ctx, s.pr.codes.AuthorizeCodeSignature(ctx, code), r)
}

// DeleteOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *profileStore) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return s.SessionStore.DeleteOpenIDConnectSession(ctx, s.pr.codes.AuthorizeCodeSignature(ctx, code))
}

func (pr *profile) client(ctx context.Context, id string) (*client, error) {
	if id == "" {
		return nil, fmt.Errorf("empty client id: %w", storage.ErrNotFound)
	}
	c, err := pr.p.clients.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.rec.Profile != pr.name {
		return nil, fmt.Errorf("client %q is registered for profile %q: %w", id, c.rec.Profile, storage.ErrNotFound)
	}
	return c, nil
}

// oidcAuthorize is fosite's OpenID Connect explicit handler restricted to the
// authorize endpoint (prompt/max_age/nonce validation and the OIDC session
// for the code); ID tokens are issued by idTokenHandler.
type oidcAuthorize struct {
	h *openid.OpenIDConnectExplicitHandler
}

func oidcAuthorizeFactory(config fosite.Configurator, storage, strategy any) any {
	return &oidcAuthorize{h: compose.OpenIDConnectExplicitFactory(config, storage, strategy).(*openid.OpenIDConnectExplicitHandler)}
}

func (o *oidcAuthorize) HandleAuthorizeEndpointRequest(ctx context.Context, ar fosite.AuthorizeRequester, resp fosite.AuthorizeResponder) error {
	return o.h.HandleAuthorizeEndpointRequest(ctx, ar, resp)
}

// idTokenHandler issues ID tokens at the token endpoint for the code and
// refresh grants. Unlike fosite's handlers it computes at_hash with the
// profile's hash (SM3 for SM2SM3, DESIGN.md §4) through signing.HalfHash.
type idTokenHandler struct {
	pr    *profile
	store openid.OpenIDConnectRequestStorage
}

var _ fosite.TokenEndpointHandler = (*idTokenHandler)(nil)

func (pr *profile) idTokenFactory(_ fosite.Configurator, st, _ any) any {
	return &idTokenHandler{pr: pr, store: st.(openid.OpenIDConnectRequestStorage)}
}

func (h *idTokenHandler) HandleTokenEndpointRequest(context.Context, fosite.AccessRequester) error {
	return fosite.ErrUnknownRequest
}

func (h *idTokenHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

func (h *idTokenHandler) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne("authorization_code") || r.GetGrantTypes().ExactOne("refresh_token")
}

func (h *idTokenHandler) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) || !r.GetGrantedScopes().Has(ScopeOpenID) {
		return fosite.ErrUnknownRequest
	}
	var source fosite.Requester = r
	if r.GetGrantTypes().ExactOne("authorization_code") {
		code := r.GetRequestForm().Get("code")
		auth, err := h.store.GetOpenIDConnectSession(ctx, code, r)
		if errors.Is(err, openid.ErrNoSessionFound) {
			return fosite.ErrUnknownRequest
		} else if err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		if err := h.store.DeleteOpenIDConnectSession(ctx, code); err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		// The OIDC record holds the authorize request's form (nonce,
		// max_age, prompt) but no session (storage.FositeStore): the session
		// is the code's, which the authorization-code handler put into r.
		// GenerateIDToken writes into the claims, so it gets a copy.
		sess, ok := r.GetSession().(*Session)
		if !ok {
			return fosite.ErrServerError.WithDebug("session is not an essc session")
		}
		auth.SetSession(sess.Clone())
		source = auth
	}
	sess, ok := source.GetSession().(*Session)
	if !ok || sess.IDTokenClaims().Subject == "" {
		return fosite.ErrServerError.WithDebug("session is not an essc session with a subject")
	}
	claims := sess.IDTokenClaims()
	alg := h.pr.idTokenAlg(r.GetClient())
	atHash, err := signing.HalfHash(alg, resp.GetAccessToken())
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	claims.AccessTokenHash = atHash
	claims.CodeHash = ""
	claims.ExpiresAt = time.Time{} // fresh exp per issuance
	claims.JTI = ""
	lifespan := fosite.GetEffectiveLifespan(r.GetClient(), fosite.GrantTypeAuthorizationCode, fosite.IDToken, h.pr.fc.IDTokenLifespan)
	tok, err := h.pr.ids[alg].GenerateIDToken(ctx, lifespan, source)
	if err != nil {
		return err
	}
	resp.SetExtra("id_token", tok)
	return nil
}

// idTokenAlg is the client's id_token_signed_response_alg when the profile
// publishes it, else the profile's alg.
func (pr *profile) idTokenAlg(c fosite.Client) string {
	if cl, ok := c.(*client); ok && cl.rec.IDTokenAlg != "" && pr.ids[cl.rec.IDTokenAlg] != nil {
		return cl.rec.IDTokenAlg
	}
	return pr.alg
}

// mount registers this profile's routes.
func (pr *profile) mount(mux *http.ServeMux) {
	x := pr.prefix
	mux.HandleFunc("GET "+x+"/.well-known/openid-configuration", pr.discovery)
	mux.HandleFunc("GET "+x+"/jwks.json", pr.jwks)
	mux.HandleFunc("GET "+x+"/oauth2/authorize", pr.authorize)
	mux.HandleFunc("POST "+x+"/oauth2/authorize", pr.authorize)
	mux.HandleFunc("POST "+x+"/oauth2/par", pr.par)
	mux.HandleFunc("POST "+x+"/oauth2/token", pr.token)
	mux.HandleFunc("POST "+x+"/oauth2/revoke", pr.revoke)
	mux.HandleFunc("POST "+x+"/oauth2/introspect", pr.introspect)
	mux.HandleFunc("GET "+x+"/userinfo", pr.userinfo)
	mux.HandleFunc("POST "+x+"/userinfo", pr.userinfo)
	mux.HandleFunc("GET "+x+"/oauth2/logout", pr.logout)
	mux.HandleFunc("POST "+x+"/oauth2/logout", pr.logout)
}
