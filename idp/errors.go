package idp

import (
	"errors"
	"net/http"

	"github.com/ory/fosite"

	"github.com/essc-project/essc/storage"
)

// oauthError is THE mapping from domain and storage errors to OAuth errors
// (CONVENTIONS 4). Chains start from fosite sentinels with WithWrap/WithHint,
// which copy; package-level errors are never mutated.
//
//   - storage.ErrUnavailable anywhere in the chain → 503 temporarily_unavailable
//     (never invalid_grant, never active:false);
//   - an *fosite.RFC6749Error (other than fosite's internal not_found) is kept;
//   - ErrInactive (card/e-card not active, PIN must change) → invalid_grant;
//   - storage.ErrNotFound → invalid_grant;
//   - anything else → 500 server_error.
func oauthError(err error) *fosite.RFC6749Error {
	if err == nil {
		return nil
	}
	if errors.Is(err, storage.ErrUnavailable) {
		return fosite.ErrTemporarilyUnavailable.WithWrap(err)
	}
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) && rfc.ErrorField != fosite.ErrNotFound.ErrorField {
		return rfc // the outermost OAuth error decides (e.g. access_denied wrapping ErrInactive)
	}
	switch {
	case errors.Is(err, ErrInactive):
		return fosite.ErrInvalidGrant.WithHint("The holder's card or e-card is not active.").WithWrap(err)
	case errors.Is(err, storage.ErrNotFound):
		return fosite.ErrInvalidGrant.WithWrap(err)
	}
	return fosite.ErrServerError.WithWrap(err)
}

// isUnavailable reports whether err means a backing store is down.
func isUnavailable(err error) bool { return errors.Is(err, storage.ErrUnavailable) }

// writeUnavailable writes the 503 JSON error used by token, introspection,
// revocation and userinfo when a store is down.
func writeUnavailable(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", "5")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(`{"error":"temporarily_unavailable","error_description":"The service is temporarily unavailable."}`))
}
