package idp

import (
	"encoding/json"
	"net/http"
	"slices"

	"github.com/essc-project/essc/storage"
)

// Discovery is the OpenID Provider Metadata of one profile (OpenID Connect
// Discovery 1.0 §3, RFC 8414, RFC 9126). It advertises only what is
// supported: no implicit/hybrid, no password grant, no alg none, no plain
// PKCE, no client_secret_post, no auth method none.
type Discovery struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	UserinfoEndpoint                           string   `json:"userinfo_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	PushedAuthorizationRequestEndpoint         string   `json:"pushed_authorization_request_endpoint"`
	EndSessionEndpoint                         string   `json:"end_session_endpoint"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	SubjectTypesSupported                      []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported           []string `json:"id_token_signing_alg_values_supported"`
	UserinfoSigningAlgValuesSupported          []string `json:"userinfo_signing_alg_values_supported,omitempty"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	ClaimsSupported                            []string `json:"claims_supported"`
	ACRValuesSupported                         []string `json:"acr_values_supported"`
	ClaimsParameterSupported                   bool     `json:"claims_parameter_supported"`
	RequestParameterSupported                  bool     `json:"request_parameter_supported"`
	RequestURIParameterSupported               bool     `json:"request_uri_parameter_supported"`
	RequirePushedAuthorizationRequests         bool     `json:"require_pushed_authorization_requests"`
	BackchannelLogoutSupported                 bool     `json:"backchannel_logout_supported"`
	BackchannelLogoutSessionSupported          bool     `json:"backchannel_logout_session_supported"`
	FrontchannelLogoutSupported                bool     `json:"frontchannel_logout_supported"`
	UILocalesSupported                         []string `json:"ui_locales_supported"`
}

// Discovery returns the metadata of this profile.
func (pr *profile) Discovery() Discovery {
	iss := pr.issuer
	auth := []string{storage.AuthPrivateKeyJWT}
	if pr.name == ProfileIntl {
		auth = append(auth, storage.AuthClientSecretBasic)
	}
	// Access tokens are signed with the profile's alg (ES256 on intl,
	// SM2SM3 on gm); ID tokens too, unless the client registered
	// id_token_signed_response_alg RS256 (intl).
	idAlgs := slices.Clone(pr.algs)
	assertAlgs := []string{pr.alg}
	return Discovery{
		Issuer:                                     iss,
		AuthorizationEndpoint:                      iss + "/oauth2/authorize",
		TokenEndpoint:                              iss + "/oauth2/token",
		UserinfoEndpoint:                           iss + "/userinfo",
		JWKSURI:                                    iss + "/jwks.json",
		RevocationEndpoint:                         iss + "/oauth2/revoke",
		IntrospectionEndpoint:                      iss + "/oauth2/introspect",
		PushedAuthorizationRequestEndpoint:         iss + "/oauth2/par",
		EndSessionEndpoint:                         iss + "/oauth2/logout",
		ScopesSupported:                            slices.Clone(supportedScopes),
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        []string{"authorization_code", "refresh_token", "client_credentials"},
		SubjectTypesSupported:                      []string{"pairwise"},
		IDTokenSigningAlgValuesSupported:           idAlgs,
		TokenEndpointAuthMethodsSupported:          auth,
		TokenEndpointAuthSigningAlgValuesSupported: assertAlgs,
		RevocationEndpointAuthMethodsSupported:     auth,
		IntrospectionEndpointAuthMethodsSupported:  auth,
		CodeChallengeMethodsSupported:              []string{"S256"},
		ClaimsSupported:                            slices.Clone(supportedClaims),
		ACRValuesSupported:                         []string{ACRPIN, ACRFace},
		RequestURIParameterSupported:               true,
		BackchannelLogoutSupported:                 true,
		BackchannelLogoutSessionSupported:          true,
		UILocalesSupported:                         []string{"zh-CN"},
	}
}

func (pr *profile) discovery(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=3600")
	writeJSON(w, http.StatusOK, pr.Discovery())
}

// jwks serves the profile's public keys. Cache-Control is short so a key
// published as pending reaches clients well before it becomes active.
func (pr *profile) jwks(w http.ResponseWriter, _ *http.Request) {
	set := pr.p.cfg.Keys.Publish(pr.algs...)
	w.Header().Set("Cache-Control", "public, max-age=300, must-revalidate")
	w.Header().Set("Content-Type", "application/jwk-set+json")
	b, err := json.Marshal(set)
	if err != nil {
		pr.p.log.Error("jwks marshal", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	b, err := json.Marshal(v)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
