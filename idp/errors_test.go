package idp

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ory/fosite"

	"github.com/essc-project/essc/storage"
)

func TestOAuthErrorMapping(t *testing.T) {
	hintBefore := fosite.ErrInvalidGrant.HintField
	down := fmt.Errorf("redis: %w", storage.ErrUnavailable)
	inactive := fmt.Errorf("card: %w", ErrInactive)
	for _, tt := range []struct {
		name   string
		err    error
		want   string
		status int
	}{
		{"fail/outage bare", down, "temporarily_unavailable", http.StatusServiceUnavailable},
		{"fail/outage inside fosite server_error", fosite.ErrServerError.WithWrap(down), "temporarily_unavailable", http.StatusServiceUnavailable},
		{"fail/outage inside invalid_grant", fosite.ErrInvalidGrant.WithWrap(down), "temporarily_unavailable", http.StatusServiceUnavailable},
		{"fail/inactive card", inactive, "invalid_grant", http.StatusBadRequest},
		{"fail/access_denied wrapping inactive stays", fosite.ErrAccessDenied.WithWrap(inactive), "access_denied", http.StatusForbidden},
		{"fail/not found", fmt.Errorf("code: %w", storage.ErrNotFound), "invalid_grant", http.StatusBadRequest},
		{"fail/fosite not_found", fosite.ErrNotFound, "invalid_grant", http.StatusBadRequest},
		{"fail/oauth error kept", fosite.ErrInvalidScope, "invalid_scope", http.StatusBadRequest},
		{"fail/anything else", errors.New("boom"), "server_error", http.StatusInternalServerError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := oauthError(tt.err)
			if got.ErrorField != tt.want || got.CodeField != tt.status {
				t.Fatalf("got %s/%d, want %s/%d", got.ErrorField, got.CodeField, tt.want, tt.status)
			}
		})
	}
	_ = oauthError(fosite.ErrInvalidGrant.WithHint("x"))
	if fosite.ErrInvalidGrant.HintField != hintBefore {
		t.Fatal("a package-level fosite error was mutated")
	}
	if oauthError(nil) != nil {
		t.Fatal("nil error mapped")
	}
}

func TestPairwiseSubject(t *testing.T) {
	key := []byte("pairwise-key-pairwise-key-012345")
	a := PairwiseSubject(key, "rp.example.com", "holder-1")
	if a != PairwiseSubject(key, "rp.example.com", "holder-1") {
		t.Fatal("not deterministic")
	}
	for name, other := range map[string]string{
		"fail/other sector":       PairwiseSubject(key, "gov.example.cn", "holder-1"),
		"fail/other holder":       PairwiseSubject(key, "rp.example.com", "holder-2"),
		"fail/boundary ambiguity": PairwiseSubject(key, "rp.example.comh", "older-1"),
		"fail/other key":          PairwiseSubject([]byte("another-key-another-key-01234567"), "rp.example.com", "holder-1"),
	} {
		if other == a {
			t.Fatalf("%s: same subject", name)
		}
	}
	if len(a) != 43 {
		t.Fatalf("subject length %d", len(a))
	}
}

func TestNewConfigValidation(t *testing.T) {
	_, err := New(Config{BaseURL: "https://x.example/"})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"BaseURL", "Keys", "Sessions", "Login", "GlobalSecret", "PairwiseKey"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error does not report %s: %v", want, err)
		}
	}
}
