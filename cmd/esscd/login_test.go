package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestRememberHolderCheckScope: only the QR scan and confirm requests (which
// change no card status) carry the per-request memo of the device
// authentication's status check; every other app request re-checks.
func TestRememberHolderCheckScope(t *testing.T) {
	for path, want := range map[string]bool{
		"/wallet/v1/qr/scan":         true,
		"/wallet/v1/qr/confirm":      true,
		"/wallet/v1/report-loss":     false,
		"/wallet/v1/devices/unbind":  false,
		"/wallet/v1/qr/deny":         false,
		"/wallet/v1/qr/scan/../scan": false, // the router cleans paths; the memo is keyed on the raw path
	} {
		var got bool
		h := rememberHolderCheck(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			_, got = r.Context().Value(holderCheckKey{}).(*holderCheck)
		}))
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", path, nil))
		if got != want {
			t.Errorf("%s: memo %v, want %v", path, got, want)
		}
	}
}
