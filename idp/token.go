package idp

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/ory/fosite"

	"github.com/essc-project/essc/storage"
)

// grantTypes are the only grants served (no password, no implicit, no
// jwt-bearer, no device code).
var grantTypes = []string{"authorization_code", "refresh_token", "client_credentials"}

// token is the token endpoint (RFC 6749 §3.2).
func (pr *profile) token(w http.ResponseWriter, r *http.Request) {
	// The new tokens and the deletes of the redeemed code's PKCE and OIDC
	// records go to the store in one round trip, before the answer (or after
	// a refusal, by the deferred flush).
	ctx, flush := storage.Batch(r.Context(), pr.p.cfg.Sessions)
	defer func() {
		if err := flush(r.Context()); err != nil {
			pr.p.log.WarnContext(ctx, "token: flushing store writes after a refusal", "profile", pr.name, "err", err)
		}
	}()
	sess := newSession(pr.name)
	if err := r.ParseForm(); err != nil {
		pr.accessError(ctx, w, nil, fosite.ErrInvalidRequest.WithWrap(err))
		return
	}
	for _, p := range []string{"grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope"} {
		if len(r.PostForm[p]) > 1 {
			pr.accessError(ctx, w, nil, fosite.ErrInvalidRequest.WithHintf("Parameter %q is duplicated.", p))
			return
		}
	}
	if gt := r.PostForm.Get("grant_type"); !slices.Contains(grantTypes, gt) {
		pr.accessError(ctx, w, nil, fosite.ErrUnsupportedGrantType)
		return
	}
	ar, err := pr.oauth.NewAccessRequest(ctx, r, sess)
	if err != nil {
		pr.accessError(ctx, w, ar, err)
		return
	}
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		c := ar.GetClient().(*client)
		sess.ClientID = c.rec.ID
		sess.Subject = c.rec.ID
		for _, s := range ar.GetRequestedScopes() {
			if s == ScopeOpenID || s == ScopeOfflineAccess {
				pr.accessError(ctx, w, ar, fosite.ErrInvalidScope.WithHintf("Scope %q is not available to client_credentials.", s))
				return
			}
			ar.GrantScope(s)
		}
	} else {
		// Code and refresh: the stored session is back on ar; re-check the
		// holder's card and e-card before anything is issued.
		s, ok := ar.GetSession().(*Session)
		if !ok || s.HolderID == "" {
			pr.accessError(ctx, w, ar, fosite.ErrServerError.WithDebug("stored session is not a holder session"))
			return
		}
		if err := pr.p.cfg.Holders.Check(ctx, s.HolderID, s.ECardID); err != nil {
			if errors.Is(err, ErrInactive) {
				pr.revokeRequest(ctx, ar.GetID())
			}
			pr.accessError(ctx, w, ar, err)
			return
		}
	}
	if !ar.GetGrantTypes().Has("refresh_token") {
		ctx = storage.NewGrant(ctx) // the grant's first tokens
	}
	resp, err := pr.oauth.NewAccessResponse(ctx, ar)
	if err == nil {
		err = flush(r.Context())
	}
	if err != nil {
		pr.accessError(ctx, w, ar, err)
		return
	}
	pr.oauth.WriteAccessResponse(ctx, w, ar, resp)
}

// revokeRequest revokes every token of a request id (best effort: the
// live-status check stops their use anyway).
func (pr *profile) revokeRequest(ctx context.Context, requestID string) {
	if err := pr.store.RevokeAccessToken(ctx, requestID); err != nil && !errors.Is(err, fosite.ErrNotFound) {
		pr.p.log.WarnContext(ctx, "revoke access tokens", "err", err)
	}
	if err := pr.store.RevokeRefreshToken(ctx, requestID); err != nil && !errors.Is(err, fosite.ErrNotFound) {
		pr.p.log.WarnContext(ctx, "revoke refresh tokens", "err", err)
	}
}

func (pr *profile) accessError(ctx context.Context, w http.ResponseWriter, ar fosite.AccessRequester, err error) {
	if isUnavailable(err) {
		pr.p.log.WarnContext(ctx, "token: store unavailable", "profile", pr.name, "err", err)
		writeUnavailable(w)
		return
	}
	rfc := oauthError(err)
	if rfc.CodeField >= 500 {
		pr.p.log.ErrorContext(ctx, "token: server error", "profile", pr.name, "err", err)
	} else {
		pr.p.log.InfoContext(ctx, "token: rejected", "profile", pr.name, "error", rfc.ErrorField, "debug", rfc.DebugField)
	}
	if ar == nil {
		ar = fosite.NewAccessRequest(nil)
	}
	pr.oauth.WriteAccessError(ctx, w, ar, rfc)
}
