package idp

import (
	"errors"
	"net/http"

	"github.com/ory/fosite"
)

// userinfo is the OpenID Connect UserInfo endpoint (Core §5.3): the claims
// of the granted scopes, re-read from the registry (so a cancelled card gets
// 401 invalid_token, an outage 503).
func (pr *profile) userinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tok, err := bearer(r)
	if err != nil {
		pr.bearerError(w, "invalid_request")
		return
	}
	ar, s, err := pr.tokenSession(ctx, tok) // Identity below checks the holder
	if err != nil {
		if isUnavailable(err) {
			writeUnavailable(w)
			return
		}
		pr.p.log.InfoContext(ctx, "userinfo: token rejected", "profile", pr.name, "err", err)
		pr.bearerError(w, "invalid_token")
		return
	}
	if s.HolderID == "" {
		pr.bearerError(w, "insufficient_scope")
		return
	}
	id, err := pr.p.cfg.Holders.Identity(ctx, s.HolderID, s.ECardID)
	if err != nil {
		if isUnavailable(err) {
			writeUnavailable(w)
			return
		}
		if !errors.Is(err, ErrInactive) {
			pr.p.log.ErrorContext(ctx, "userinfo: identity", "err", err)
		}
		pr.bearerError(w, "invalid_token")
		return
	}
	if !ar.GetGrantedScopes().Has(ScopeOpenID) {
		pr.bearerError(w, "insufficient_scope")
		return
	}
	claims := userClaims(id, ar.GetGrantedScopes())
	claims["sub"] = s.Subject
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, claims)
}

func (pr *profile) bearerError(w http.ResponseWriter, code string) {
	status := http.StatusUnauthorized
	switch code {
	case "invalid_request":
		status = http.StatusBadRequest
	case "insufficient_scope":
		status = http.StatusForbidden
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="`+pr.issuer+`", error="`+code+`"`)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": code})
}

var _ = fosite.ErrNotFound
