package entitlement

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestDefaultWebhookClientRefusesRedirects: without an injected client the
// dispatcher's own client stops at a 3xx (a failed attempt) instead of
// resending the signed event to wherever the endpoint points.
func TestDefaultWebhookClientRefusesRedirects(t *testing.T) {
	var followed bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { followed = true }))
	defer elsewhere.Close()
	redirect := httptest.NewServer(http.RedirectHandler(elsewhere.URL, http.StatusTemporaryRedirect))
	defer redirect.Close()
	d, err := NewDispatcher(DispatcherConfig{Service: &Service{}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.cfg.HTTPClient.Post(redirect.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if followed || resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("redirect followed=%v status=%d", followed, resp.StatusCode)
	}
	if !errors.Is(d.cfg.HTTPClient.CheckRedirect(nil, nil), http.ErrUseLastResponse) {
		t.Fatal("CheckRedirect")
	}
}
