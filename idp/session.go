package idp

import (
	"maps"
	"slices"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
)

// Session is the fosite session of every essc token. It is stored by the
// SessionStore as JSON (NewSession is the factory the store needs) and never
// leaves the server: tokens carry only the pairwise subject.
type Session struct {
	openid.DefaultSession
	// Profile is the issuer profile the session belongs to.
	Profile string `json:"profile"`
	// ClientID is the client the tokens were issued to.
	ClientID string `json:"client_id"`
	// HolderID and ECardID identify the authenticated holder (empty for
	// client_credentials); every use re-checks their live status.
	HolderID string `json:"holder_id,omitempty"`
	ECardID  string `json:"ecard_id,omitempty"`
	Purpose  string `json:"purpose,omitempty"`
	// SID is the browser session id of the login (the logout token's sid).
	SID string `json:"sid,omitempty"`
	// AccessTokenDigest is the SHA-256 of the last access token issued with
	// this session (accessTokens).
	AccessTokenDigest []byte `json:"atd,omitempty"`
}

var (
	_ openid.Session             = (*Session)(nil)
	_ oauth2.JWTSessionContainer = (*Session)(nil)
)

// NewSession returns an empty Session; storage backends use it to rebuild
// stored requests (storage Config.NewSession).
func NewSession() fosite.Session { return newSession("") }

func newSession(profile string) *Session {
	return &Session{
		DefaultSession: openid.DefaultSession{
			Claims:    &jwt.IDTokenClaims{Extra: map[string]any{}},
			Headers:   &jwt.Headers{Extra: map[string]any{}},
			ExpiresAt: map[fosite.TokenType]time.Time{},
		},
		Profile: profile,
	}
}

// GetJWTClaims returns the access-token claims: the pairwise subject (or the
// client id for client_credentials) and client_id; fosite adds iss, aud, exp,
// iat, jti and scope.
func (s *Session) GetJWTClaims() jwt.JWTClaimsContainer {
	return &jwt.JWTClaims{
		Subject:    s.Subject,
		Extra:      map[string]any{"client_id": s.ClientID},
		ScopeField: jwt.JWTScopeFieldString,
	}
}

// GetJWTHeader returns the access-token header: typ at+jwt (RFC 9068).
func (s *Session) GetJWTHeader() *jwt.Headers {
	return &jwt.Headers{Extra: map[string]any{"typ": "at+jwt"}}
}

// Clone deep-copies the session (fosite clones on refresh).
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	c := *s
	if s.Claims != nil {
		cl := *s.Claims
		cl.Audience = slices.Clone(cl.Audience)
		cl.AuthenticationMethodsReferences = slices.Clone(cl.AuthenticationMethodsReferences)
		cl.Extra = maps.Clone(cl.Extra)
		c.Claims = &cl
	}
	if s.Headers != nil {
		c.Headers = &jwt.Headers{Extra: maps.Clone(s.Headers.Extra)}
	}
	c.ExpiresAt = maps.Clone(s.ExpiresAt)
	c.AccessTokenDigest = slices.Clone(s.AccessTokenDigest)
	return &c
}

// IDTokenClaims returns the ID token claims, never nil.
func (s *Session) IDTokenClaims() *jwt.IDTokenClaims {
	if s.Claims == nil {
		s.Claims = &jwt.IDTokenClaims{Extra: map[string]any{}}
	}
	return s.Claims
}

// IDTokenHeaders returns the ID token header members, never nil.
func (s *Session) IDTokenHeaders() *jwt.Headers {
	if s.Headers == nil {
		s.Headers = &jwt.Headers{Extra: map[string]any{}}
	}
	return s.Headers
}
