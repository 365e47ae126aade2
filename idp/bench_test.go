package idp

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/essc-project/essc/signing"
)

// benchClientCredentials measures the token endpoint's client_credentials
// path in-process (no sockets): assertion verification, jti replay check,
// client lookup, token signing and session write. Assertions are made
// before the timer starts (they are the client's cost).
func benchClientCredentials(b *testing.B, prefix, clientID string, key *signing.Key, scope string, cacheTTL bool) {
	e := newEnv(b)
	if cacheTTL {
		cfg := e.p.cfg
		cfg.ClientCacheTTL = 0 // default 5 s cache
		p, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		e.p = p
	}
	mux := http.NewServeMux()
	e.p.Mount(mux)
	forms := make([]string, b.N)
	for i := range forms {
		forms[i] = url.Values{"grant_type": {"client_credentials"}, "scope": {scope}, "client_assertion_type": {assertionType},
			"client_assertion": {e.assertion(key, clientID, e.srv.URL+prefix+"/oauth2/token", nil)}}.Encode()
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			req := httptest.NewRequest(http.MethodPost, prefix+"/oauth2/token", strings.NewReader(forms[i]))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatalf("status %d %s", rec.Code, rec.Body)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

func BenchmarkClientCredentialsGM(b *testing.B) {
	benchClientCredentials(b, "/gm", "rp-gm", loadKey(b, "client-sm2"), "essc.verify", true)
}

func BenchmarkClientCredentialsIntlES256(b *testing.B) {
	benchClientCredentials(b, "", "rp-intl-jwt", loadKey(b, "client-es256"), "essc.admin", true)
}
