package idp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/essc-project/essc/idp/secret"
	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
)

// Client assertion policy (DESIGN.md §5).
const (
	assertionType     = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	maxAssertionLife  = 2 * time.Minute
	maxIATFuture      = 60 * time.Second
	assertionSkew     = 5 * time.Second
	jtiNamespace      = "client-assertion-jti"
	maxAssertionBytes = 8 << 10
)

// authenticateClient is the profile's fosite ClientAuthenticationStrategy:
// private_key_jwt (RFC 7523 §2.2 with the profile's alg: SM2SM3 on gm,
// ES256 on intl) or, for intl clients registered for it, client_secret_basic
// (HMAC-SM3 hash compared in constant time). Never "none", never
// client_secret_post.
func (pr *profile) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	c, err := pr.authenticate(ctx, r, form)
	if err != nil {
		if isUnavailable(err) {
			return nil, fosite.ErrTemporarilyUnavailable.WithWrap(err)
		}
		var rfc *fosite.RFC6749Error
		if errors.As(err, &rfc) && (rfc.ErrorField == fosite.ErrInvalidClient.ErrorField || rfc.ErrorField == fosite.ErrInvalidRequest.ErrorField) {
			return nil, rfc
		}
		return nil, fosite.ErrInvalidClient.WithWrap(err).WithDebug(err.Error())
	}
	return c, nil
}

func (pr *profile) authenticate(ctx context.Context, r *http.Request, form url.Values) (*client, error) {
	for _, p := range []string{"client_assertion", "client_assertion_type", "client_id", "client_secret"} {
		if len(form[p]) > 1 {
			return nil, fosite.ErrInvalidRequest.WithHintf("Parameter %q is duplicated.", p)
		}
	}
	if form.Get("client_secret") != "" {
		return nil, fosite.ErrInvalidClient.WithHint("client_secret_post is not supported.")
	}
	_, _, hasBasic := r.BasicAuth()
	assertion := form.Get("client_assertion")
	switch {
	case assertion != "" && hasBasic:
		return nil, fosite.ErrInvalidRequest.WithHint("Use exactly one client authentication method.")
	case assertion != "":
		if form.Get("client_assertion_type") != assertionType {
			return nil, fosite.ErrInvalidClient.WithHint("Unknown client_assertion_type.")
		}
		return pr.authPrivateKeyJWT(ctx, form.Get("client_id"), assertion)
	case hasBasic:
		return pr.authSecretBasic(ctx, r, form.Get("client_id"))
	}
	return nil, fosite.ErrInvalidClient.WithHint("Client authentication is required.")
}

func (pr *profile) authSecretBasic(ctx context.Context, r *http.Request, formID string) (*client, error) {
	rawID, rawSecret, _ := r.BasicAuth()
	id, err1 := url.QueryUnescape(rawID) // RFC 6749 §2.3.1
	sec, err2 := url.QueryUnescape(rawSecret)
	if err1 != nil || err2 != nil || id == "" {
		return nil, errors.New("malformed basic credentials")
	}
	if formID != "" && formID != id {
		return nil, errors.New("client_id differs from basic credentials")
	}
	c, err := pr.client(ctx, id)
	if err != nil {
		return nil, err
	}
	if pr.name != ProfileIntl || c.rec.AuthMethod != storage.AuthClientSecretBasic {
		return nil, fmt.Errorf("client %q may not use client_secret_basic", id)
	}
	if !secret.Equal(pr.p.cfg.ClientSecretKey, sec, c.rec.SecretHash) {
		return nil, fmt.Errorf("client %q: wrong secret", id)
	}
	return c, nil
}

// assertionClaims are the RFC 7523 claims we read; aud may be a string or
// an array.
type assertionClaims struct {
	Iss string          `json:"iss"`
	Sub string          `json:"sub"`
	Aud json.RawMessage `json:"aud"`
	Exp *json.Number    `json:"exp"`
	Iat *json.Number    `json:"iat"`
	Nbf *json.Number    `json:"nbf"`
	JTI string          `json:"jti"`
}

// peekIssuer reads iss from an unverified JWT payload only to find the key set.
func peekIssuer(tok string) (string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", errors.New("assertion is not a compact JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", errors.New("assertion payload is not base64url")
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(b, &c); err != nil || c.Iss == "" {
		return "", errors.New("assertion has no iss")
	}
	return c.Iss, nil
}

func (pr *profile) authPrivateKeyJWT(ctx context.Context, formID, tok string) (*client, error) {
	if len(tok) > maxAssertionBytes {
		return nil, errors.New("assertion too large")
	}
	iss, err := peekIssuer(tok)
	if err != nil {
		return nil, err
	}
	if formID != "" && formID != iss {
		return nil, errors.New("client_id differs from assertion iss")
	}
	c, err := pr.client(ctx, iss)
	if err != nil {
		return nil, err
	}
	if c.rec.AuthMethod != storage.AuthPrivateKeyJWT || len(c.keys) == 0 {
		return nil, fmt.Errorf("client %q may not use private_key_jwt", iss)
	}
	h, payload, err := signing.Verify(tok, c)
	if err != nil {
		return nil, fmt.Errorf("assertion signature: %w", err)
	}
	if h.Alg != pr.alg {
		return nil, fmt.Errorf("assertion alg %s not allowed on profile %s", h.Alg, pr.name)
	}
	var cl assertionClaims
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	if err := dec.Decode(&cl); err != nil {
		return nil, fmt.Errorf("assertion claims: %w", err)
	}
	if err := pr.checkAssertion(cl, iss); err != nil {
		return nil, err
	}
	exp, _ := cl.Exp.Int64()
	ttl := max(time.Unix(exp, 0).Sub(pr.p.now()), 0) // the jti is kept until exp
	first, err := pr.p.cfg.Replay.Seen(ctx, jtiNamespace, c.rec.ID+"\x00"+cl.JTI, ttl+assertionSkew)
	if err != nil {
		return nil, err
	}
	if !first {
		return nil, errors.New("assertion jti replayed")
	}
	return c, nil
}

// checkAssertion enforces iss = sub = client, aud = token endpoint or
// issuer, exp present and at most 2 min ahead, iat not more than 60 s in the
// future, nbf reached, jti present.
func (pr *profile) checkAssertion(cl assertionClaims, clientID string) error {
	now := pr.p.now()
	if cl.Iss != clientID || cl.Sub != clientID {
		return errors.New("assertion iss/sub must be the client id")
	}
	if cl.JTI == "" || len(cl.JTI) > 256 {
		return errors.New("assertion jti missing or too long")
	}
	var auds []string
	if len(cl.Aud) > 0 && cl.Aud[0] == '"' {
		var a string
		if err := json.Unmarshal(cl.Aud, &a); err != nil {
			return errors.New("assertion aud malformed")
		}
		auds = []string{a}
	} else if err := json.Unmarshal(cl.Aud, &auds); err != nil {
		return errors.New("assertion aud malformed")
	}
	okAud := false
	for _, a := range auds {
		if a == pr.issuer || a == pr.issuer+"/oauth2/token" {
			okAud = true
		}
	}
	if !okAud {
		return errors.New("assertion aud is not this issuer's token endpoint")
	}
	if cl.Exp == nil {
		return errors.New("assertion exp missing")
	}
	exp, err := cl.Exp.Int64()
	if err != nil {
		return errors.New("assertion exp not an integer")
	}
	expT := time.Unix(exp, 0)
	if !expT.After(now.Add(-assertionSkew)) {
		return errors.New("assertion expired")
	}
	if expT.Sub(now) > maxAssertionLife+assertionSkew {
		return errors.New("assertion exp more than 2 minutes ahead")
	}
	if cl.Iat != nil {
		iat, err := cl.Iat.Int64()
		if err != nil {
			return errors.New("assertion iat not an integer")
		}
		if time.Unix(iat, 0).Sub(now) > maxIATFuture {
			return errors.New("assertion iat too far in the future")
		}
	}
	if cl.Nbf != nil {
		nbf, err := cl.Nbf.Int64()
		if err != nil || time.Unix(nbf, 0).After(now.Add(assertionSkew)) {
			return errors.New("assertion not yet valid")
		}
	}
	return nil
}
