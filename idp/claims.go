package idp

import "slices"

// Scopes of DESIGN.md §5.
const (
	ScopeOpenID        = "openid"
	ScopeProfile       = "profile"
	ScopeCard          = "essc.card"
	ScopeSSN           = "essc.ssn"
	ScopeEntitlement   = "essc.entitlement"
	ScopeOfflineAccess = "offline_access"
)

// ACR values (DESIGN.md §5), weakest first.
const (
	ACRPIN  = "urn:essc:acr:pin"
	ACRFace = "urn:essc:acr:face"
)

// acrRank orders the supported acr values; unknown values rank -1.
func acrRank(acr string) int {
	switch acr {
	case ACRPIN:
		return 1
	case ACRFace:
		return 2
	}
	return -1
}

// acrSatisfies reports whether got meets the request: with no acr_values any
// supported acr does; otherwise got must be one of the requested values or
// stronger than the weakest requested one (never a downgrade).
func acrSatisfies(got string, requested []string) bool {
	g := acrRank(got)
	if g < 0 {
		return false
	}
	if len(requested) == 0 {
		return true
	}
	for _, r := range requested {
		if rr := acrRank(r); rr > 0 && g >= rr {
			return true
		}
	}
	return false
}

// Claim names released per scope.
const (
	ClaimName       = "name"
	ClaimSSNMasked  = "essc_ssn_masked"
	ClaimSSN        = "essc_ssn"
	ClaimCardStatus = "essc_card_status"
	ClaimRegion     = "essc_card_region"
	ClaimLevel      = "essc_ecard_level"
)

// supportedScopes is advertised in discovery.
var supportedScopes = []string{ScopeOpenID, ScopeProfile, ScopeCard, ScopeSSN, ScopeEntitlement, ScopeOfflineAccess}

// supportedClaims is advertised in discovery.
var supportedClaims = []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "at_hash", "sid",
	ClaimName, ClaimSSNMasked, ClaimSSN, ClaimCardStatus, ClaimRegion, ClaimLevel}

// userClaims returns the claims released for the granted scopes: profile →
// name and the masked SSN (the default identity display); essc.card → card
// status, issuing region, e-card level; essc.ssn → the full SSN (only when
// granted; the scope is only grantable to clients registered for it).
// essc.entitlement claims belong to the entitlement API (issue 7) and are not
// released here.
func userClaims(id Identity, granted []string) map[string]any {
	out := map[string]any{}
	if slices.Contains(granted, ScopeProfile) {
		out[ClaimName] = id.Name
		out[ClaimSSNMasked] = id.SSNMasked
	}
	if slices.Contains(granted, ScopeCard) {
		out[ClaimCardStatus] = id.CardStatus
		out[ClaimRegion] = id.Region
		out[ClaimLevel] = id.Level
	}
	if slices.Contains(granted, ScopeSSN) {
		out[ClaimSSN] = id.SSN
	}
	return out
}

// needsConsent lists the requested scopes that need the holder's explicit
// consent: essc.ssn always (never remembered), anything else not granted
// before. openid is implied by signing in.
func needsConsent(requested, granted []string) []string {
	var out []string
	for _, s := range requested {
		if s == ScopeOpenID {
			continue
		}
		if s == ScopeSSN || !slices.Contains(granted, s) {
			out = append(out, s)
		}
	}
	return out
}
