package idp

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
)

// accessTokens is fosite's JWT access-token strategy, except that a token
// presented back to us (introspection, userinfo, the admin API guard) is
// validated against the SHA-256 digest of the exact token stored with its
// session instead of by verifying its signature again: the session store
// already looked the token up by its signature, and byte equality with the
// token we issued proves what the signature would, for the cost of a hash
// instead of an SM2 or ECDSA verification (docs/PERFORMANCE.md). A token
// that does not match (altered header or claims with a real signature) or a
// session stored without a digest is verified as before. Resource servers
// that verify our JWTs themselves are unaffected.
type accessTokens struct {
	*oauth2.DefaultJWTStrategy
	now func() time.Time
}

func tokenDigest(tok string) []byte {
	d := sha256.Sum256([]byte(tok))
	return d[:]
}

// GenerateAccessToken signs the token and records its digest in the session
// that is stored with it.
func (a *accessTokens) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	tok, sig, err := a.DefaultJWTStrategy.GenerateAccessToken(ctx, r)
	if err == nil {
		if s, ok := r.GetSession().(*Session); ok {
			s.AccessTokenDigest = tokenDigest(tok)
		}
	}
	return tok, sig, err
}

// ValidateAccessToken: r is the stored request the token's signature found.
func (a *accessTokens) ValidateAccessToken(ctx context.Context, r fosite.Requester, tok string) error {
	if s, ok := r.GetSession().(*Session); ok && len(s.AccessTokenDigest) == sha256.Size &&
		subtle.ConstantTimeCompare(tokenDigest(tok), s.AccessTokenDigest) == 1 {
		if exp := s.GetExpiresAt(fosite.AccessToken); !exp.IsZero() && !a.now().Before(exp) {
			return fosite.ErrTokenExpired.WithHint("Token expired.")
		}
		return nil
	}
	return a.DefaultJWTStrategy.ValidateAccessToken(ctx, r, tok)
}
