package storage

import (
	"time"

	"github.com/ory/fosite"
)

// Defaults shared by the session backends.
const (
	// DefaultRefreshGrace is how long a rotated refresh token stays usable so
	// a client that lost the token response can retry (DESIGN.md §5).
	DefaultRefreshGrace = 10 * time.Second
	// DefaultFallbackTTL bounds items whose session carries no expiry for
	// their token type (e.g. refresh tokens with an unlimited lifespan); it is
	// the 12 h absolute refresh lifetime of DESIGN.md §5.
	DefaultFallbackTTL = 12 * time.Hour
	// parTokenType is the fosite token type PAR sessions expire by.
	parTokenType = fosite.PushedAuthorizeRequestContext
)

// ExpiryOf returns when an item stored for r as token type tt expires: the
// session's expiry for tt when set, else now+fallback.
func ExpiryOf(r fosite.Requester, tt fosite.TokenType, now time.Time, fallback time.Duration) time.Time {
	if r != nil && r.GetSession() != nil {
		if e := r.GetSession().GetExpiresAt(tt); !e.IsZero() {
			return e
		}
	}
	return now.Add(fallback)
}

// PARExpiry is ExpiryOf for a pushed authorization request.
func PARExpiry(r fosite.Requester, now time.Time, fallback time.Duration) time.Time {
	return ExpiryOf(r, parTokenType, now, fallback)
}

// Window returns the fixed rate-limit window containing now: [start, end),
// start = now truncated to a multiple of window since the Unix epoch.
func Window(now time.Time, window time.Duration) (start, end time.Time) {
	start = now.Truncate(window)
	return start, start.Add(window)
}

// Decide turns the hit count of the current window into a RateDecision.
func Decide(count, limit int, now, end time.Time) RateDecision {
	if count <= limit {
		return RateDecision{Allowed: true, Remaining: limit - count}
	}
	return RateDecision{Allowed: false, Remaining: 0, RetryAfter: end.Sub(now)}
}
