package idp

import "net/http"

// logout is RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
func (pr *profile) logout(w http.ResponseWriter, r *http.Request) {
	page(w, http.StatusOK, msgLoggedOut)
}
