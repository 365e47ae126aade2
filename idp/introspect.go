package idp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/ory/fosite"
)

// introspect is the RFC 7662 endpoint. Callers authenticate like at the
// token endpoint (fosite's own introspection handler only knows basic auth
// with its own secret hashing, so the caller is authenticated here); a caller
// sees only tokens issued to itself or naming it in their audience (any
// other token is active:false). A holder token whose card or e-card is no
// longer active is active:false; a store outage is 503, never active:false.
func (pr *profile) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, fosite.ErrInvalidRequest)
		return
	}
	caller, err := pr.authenticateClient(ctx, r, r.PostForm)
	if err != nil {
		if isUnavailable(err) {
			writeUnavailable(w)
			return
		}
		writeOAuthError(w, oauthError(err))
		return
	}
	if len(r.PostForm["token"]) != 1 || r.PostForm.Get("token") == "" || len(r.PostForm["token_type_hint"]) > 1 {
		writeOAuthError(w, fosite.ErrInvalidRequest.WithHint("Exactly one token parameter is required."))
		return
	}
	tu, ar, err := pr.oauth.IntrospectToken(ctx, r.PostForm.Get("token"), fosite.TokenUse(r.PostForm.Get("token_type_hint")), newSession(pr.name))
	if err != nil {
		if isUnavailable(err) {
			writeUnavailable(w)
			return
		}
		writeInactive(w)
		return
	}
	id := caller.GetID()
	if ar.GetClient().GetID() != id && !slices.Contains(ar.GetGrantedAudience(), id) {
		writeInactive(w)
		return
	}
	if s, ok := ar.GetSession().(*Session); ok && s.HolderID != "" {
		if err := pr.p.cfg.Holders.Check(ctx, s.HolderID, s.ECardID); err != nil {
			if isUnavailable(err) {
				writeUnavailable(w)
				return
			}
			writeInactive(w)
			return
		}
	}
	pr.oauth.WriteIntrospectionResponse(ctx, w, &fosite.IntrospectionResponse{Active: true, AccessRequester: ar, TokenUse: tu, AccessTokenType: "Bearer"})
}

func writeInactive(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]bool{"active": false})
}

// writeOAuthError writes an RFC 6749 §5.2 JSON error (no debug details).
func writeOAuthError(w http.ResponseWriter, e *fosite.RFC6749Error) {
	w.Header().Set("Cache-Control", "no-store")
	status := e.CodeField
	if status == 0 {
		status = http.StatusBadRequest
	}
	writeJSON(w, status, map[string]string{"error": e.ErrorField, "error_description": e.GetDescription()})
}

// revoke is the RFC 7009 endpoint (authenticated; a client revokes only its
// own tokens; unknown tokens answer 200 as the RFC requires).
func (pr *profile) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	err := pr.oauth.NewRevocationRequest(ctx, r)
	if isUnavailable(err) {
		writeUnavailable(w)
		return
	}
	pr.oauth.WriteRevocationResponse(ctx, w, err)
}

// errNoBearer is returned by Authenticate when no bearer token is present.
var errNoBearer = errors.New("idp: no bearer token")

// bearer extracts an RFC 6750 bearer token from the Authorization header.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(h) <= len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", errNoBearer
	}
	return strings.TrimSpace(h[len(p):]), nil
}

// accessToken validates an access token of this profile (signature, expiry,
// not revoked) and the live status of its holder.
func (pr *profile) accessToken(ctx context.Context, tok string) (fosite.AccessRequester, *Session, error) {
	ar, s, err := pr.tokenSession(ctx, tok)
	if err != nil {
		return nil, nil, err
	}
	if s.HolderID != "" {
		if err := pr.p.cfg.Holders.Check(ctx, s.HolderID, s.ECardID); err != nil {
			return nil, nil, err
		}
	}
	return ar, s, nil
}

// tokenSession is accessToken without the holder check, for a caller that
// checks the holder itself (userinfo reads the identity, which checks).
func (pr *profile) tokenSession(ctx context.Context, tok string) (fosite.AccessRequester, *Session, error) {
	_, ar, err := pr.oauth.IntrospectToken(ctx, tok, fosite.AccessToken, newSession(pr.name))
	if err != nil {
		return nil, nil, err
	}
	s, ok := ar.GetSession().(*Session)
	if !ok {
		return nil, nil, fosite.ErrServerError.WithDebug("unexpected session type")
	}
	return ar, s, nil
}

// Authenticate validates the bearer access token of r (either profile) and
// returns the client it was issued to and its granted scopes. It is the
// guard of /admin/v1 and later APIs. Errors wrap storage.ErrUnavailable on
// an outage (answer 503) and are otherwise "unauthenticated" (answer 401).
func (p *Provider) Authenticate(r *http.Request) (clientID string, scopes []string, err error) {
	tok, err := bearer(r)
	if err != nil {
		return "", nil, err
	}
	var firstErr error
	for _, pr := range []*profile{p.intl, p.gm} {
		ar, _, err := pr.accessToken(r.Context(), tok)
		if err == nil {
			return ar.GetClient().GetID(), ar.GetGrantedScopes(), nil
		}
		if isUnavailable(err) {
			return "", nil, err
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return "", nil, fmt.Errorf("idp: invalid access token: %w", firstErr)
}
