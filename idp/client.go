package idp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"

	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
)

// client adapts a storage.Client to fosite. It is immutable once built; the
// parsed assertion keys are cached with it so a token request never parses a
// JWK twice.
type client struct {
	rec  storage.Client
	keys map[string]*signing.Key // kid → key, private_key_jwt only
	lt   Lifetimes               // effective lifetimes (client override or default)
}

var (
	_ fosite.Client                         = (*client)(nil)
	_ fosite.OpenIDConnectClient            = (*client)(nil)
	_ fosite.ResponseModeClient             = (*client)(nil)
	_ fosite.ClientWithCustomTokenLifespans = (*client)(nil)
)

func newClient(rec storage.Client, def Lifetimes) (*client, error) {
	c := &client{rec: rec, lt: def}
	if v := rec.Lifetimes.Code; v > 0 {
		c.lt.Code = v
	}
	if v := rec.Lifetimes.AccessToken; v > 0 {
		c.lt.AccessToken = v
	}
	if v := rec.Lifetimes.IDToken; v > 0 {
		c.lt.IDToken = v
	}
	if v := rec.Lifetimes.RefreshToken; v > 0 {
		c.lt.RefreshToken = v
	}
	if rec.AuthMethod == storage.AuthPrivateKeyJWT && len(rec.JWKS) > 0 {
		keys, err := parseClientJWKS(rec.JWKS)
		if err != nil {
			return nil, fmt.Errorf("client %q: %w", rec.ID, err)
		}
		c.keys = keys
	}
	return c, nil
}

// parseClientJWKS parses a JWK Set strictly through signing.ParseJWK.
func parseClientJWKS(raw []byte) (map[string]*signing.Key, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	out := make(map[string]*signing.Key, len(set.Keys))
	for _, k := range set.Keys {
		key, err := signing.ParseJWK(k)
		if err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
		out[key.ID()] = key
	}
	return out, nil
}

// ResolveKey implements signing.KeyResolver over the client's own keys.
func (c *client) ResolveKey(kid, alg string) (*signing.Key, error) {
	k, ok := c.keys[kid]
	if !ok {
		return nil, fmt.Errorf("client key %q: %w", kid, signing.ErrUnknownKey)
	}
	if k.Alg() != alg {
		return nil, fmt.Errorf("client key %q is %s: %w", kid, k.Alg(), signing.ErrAlgMismatch)
	}
	return k, nil
}

func (c *client) GetID() string             { return c.rec.ID }
func (c *client) GetHashedSecret() []byte   { return c.rec.SecretHash }
func (c *client) GetRedirectURIs() []string { return c.rec.RedirectURIs }
func (c *client) GetResponseTypes() fosite.Arguments {
	return fosite.Arguments{"code"}
}
func (c *client) GetScopes() fosite.Arguments { return fosite.Arguments(c.rec.Scopes) }

// IsPublic is always false: every essc client authenticates.
func (c *client) IsPublic() bool                { return false }
func (c *client) GetAudience() fosite.Arguments { return nil }
func (c *client) GetGrantTypes() fosite.Arguments {
	if len(c.rec.GrantTypes) == 0 {
		return fosite.Arguments{"authorization_code", "refresh_token"}
	}
	return fosite.Arguments(c.rec.GrantTypes)
}
func (c *client) GetRequestURIs() []string                     { return nil }
func (c *client) GetJSONWebKeys() *jose.JSONWebKeySet          { return nil }
func (c *client) GetJSONWebKeysURI() string                    { return "" }
func (c *client) GetRequestObjectSigningAlgorithm() string     { return "" }
func (c *client) GetTokenEndpointAuthMethod() string           { return c.rec.AuthMethod }
func (c *client) GetTokenEndpointAuthSigningAlgorithm() string { return "" }

// GetResponseModes allows only query (no fragment, no form_post).
func (c *client) GetResponseModes() []fosite.ResponseModeType {
	return []fosite.ResponseModeType{fosite.ResponseModeDefault, fosite.ResponseModeQuery}
}

// GetEffectiveLifespan applies the per-client lifetimes (DESIGN.md §5).
func (c *client) GetEffectiveLifespan(_ fosite.GrantType, tt fosite.TokenType, fallback time.Duration) time.Duration {
	switch tt {
	case fosite.AuthorizeCode:
		return c.lt.Code
	case fosite.AccessToken:
		return c.lt.AccessToken
	case fosite.IDToken:
		return c.lt.IDToken
	case fosite.RefreshToken:
		return c.lt.RefreshToken
	}
	return fallback
}

// sector is the pairwise sector: the registered one, else the host of the
// first redirect URI (OpenID Connect Core §8.1), else the client id.
func (c *client) sector() string {
	if c.rec.Sector != "" {
		return c.rec.Sector
	}
	if len(c.rec.RedirectURIs) > 0 {
		if u, err := url.Parse(c.rec.RedirectURIs[0]); err == nil && u.Host != "" {
			return u.Hostname()
		}
	}
	return "client:" + c.rec.ID
}

// clientCache caches parsed clients for a short TTL so the token endpoint's
// hot path does one registry read per client per TTL, not per request.
// Disabled clients and misses are not cached.
type clientCache struct {
	src ClientSource
	ttl time.Duration
	now func() time.Time
	def Lifetimes

	mu sync.RWMutex
	m  map[string]cachedClient
}

type cachedClient struct {
	c   *client
	exp time.Time
}

func (cc *clientCache) get(ctx context.Context, id string) (*client, error) {
	now := cc.now()
	cc.mu.RLock()
	e, ok := cc.m[id]
	cc.mu.RUnlock()
	if ok && now.Before(e.exp) {
		return e.c, nil
	}
	rec, err := cc.src.Client(ctx, id)
	if err != nil {
		return nil, err
	}
	if rec.Disabled {
		return nil, fmt.Errorf("client %q disabled: %w", id, storage.ErrNotFound)
	}
	c, err := newClient(rec, cc.def)
	if err != nil {
		return nil, err
	}
	if cc.ttl > 0 {
		cc.mu.Lock()
		if len(cc.m) > 10000 { // bound memory; a full reset is cheap and rare
			clear(cc.m)
		}
		cc.m[id] = cachedClient{c: c, exp: now.Add(cc.ttl)}
		cc.mu.Unlock()
	}
	return c, nil
}
