package idp

import (
	"net/http"

	"github.com/ory/fosite"
)

// par is the pushed authorization request endpoint (RFC 9126). The client
// authenticates; the request gets the same checks as at the authorize
// endpoint (exact redirect URI, S256 PKCE, openid, acr values). The
// request_uri is single-use, bound to the client and lives Lifetimes.PAR.
func (pr *profile) par(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		pr.oauth.WritePushedAuthorizeError(ctx, w, fosite.NewAuthorizeRequest(), fosite.ErrInvalidRequest.WithWrap(err))
		return
	}
	if p := duplicated(r.Form); p != "" {
		pr.oauth.WritePushedAuthorizeError(ctx, w, fosite.NewAuthorizeRequest(), fosite.ErrInvalidRequest.WithHintf("Parameter %q is duplicated.", p))
		return
	}
	if r.Form.Get("request_uri") != "" {
		pr.oauth.WritePushedAuthorizeError(ctx, w, fosite.NewAuthorizeRequest(), fosite.ErrInvalidRequest.WithHint("request_uri is not allowed at the PAR endpoint."))
		return
	}
	ar, err := pr.oauth.NewPushedAuthorizeRequest(ctx, r)
	if err == nil {
		err = checkRequest(ar.GetRequestForm(), ar.GetClient().(*client))
	}
	if err != nil {
		if isUnavailable(err) {
			writeUnavailable(w)
			return
		}
		if ar == nil {
			ar = fosite.NewAuthorizeRequest()
		}
		pr.oauth.WritePushedAuthorizeError(ctx, w, ar, oauthError(err))
		return
	}
	resp, err := pr.oauth.NewPushedAuthorizeResponse(ctx, ar, newSession(pr.name))
	if err != nil {
		if isUnavailable(err) {
			writeUnavailable(w)
			return
		}
		pr.oauth.WritePushedAuthorizeError(ctx, w, ar, oauthError(err))
		return
	}
	pr.oauth.WritePushedAuthorizeResponse(ctx, w, ar, resp)
}
