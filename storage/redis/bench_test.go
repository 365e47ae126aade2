package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/storage"
	redisstore "github.com/essc-project/essc/storage/redis"
)

// counter is a go-redis hook counting round trips and commands.
type counter struct{ trips, cmds atomic.Int64 }

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.trips.Add(1)
		c.cmds.Add(1)
		return next(ctx, cmd)
	}
}
func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.trips.Add(1)
		c.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func benchStore(b *testing.B) (*redisstore.Store, *redis.Client, *counter) {
	c := testClient(b).(*redis.Client)
	cnt := &counter{}
	c.AddHook(cnt)
	clients := &fosite.DefaultClient{ID: "portal-zhejiang-rsj"}
	s, err := redisstore.New(redisstore.Config{Client: c, Prefix: randomPrefix(b, c),
		Lookup:     func(context.Context, string) (fosite.Client, error) { return clients, nil },
		NewSession: func() fosite.Session { return openid.NewDefaultSession() }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	// Warm the script cache so NOSCRIPT retries do not count.
	if err := s.LoadScripts(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s, c, cnt
}

// realistic is an authorize request as the provider stores it: pairwise
// subject, acr/amr, two extra claims, PKCE and nonce in the form.
func realistic(id string) *fosite.AuthorizeRequest {
	now := time.Now().UTC()
	sess := openid.NewDefaultSession()
	sess.Subject = "Yk3p0b0m1v7c3r8hX2sQq9e1m0Jt4nR6aZ8uW5dL2cF"
	sess.Claims.Subject = sess.Subject
	sess.Claims.Issuer = "https://essc.example.gov.cn/gm"
	sess.Claims.AuthTime = now
	sess.Claims.RequestedAt = now
	sess.Claims.AuthenticationContextClassReference = "urn:essc:acr:pin"
	sess.Claims.AuthenticationMethodsReferences = []string{"hwk", "pin"}
	sess.Claims.Extra = map[string]any{"ecard": "e-3f7a9c1d2b", "card_status": "active"}
	sess.SetExpiresAt(fosite.AuthorizeCode, now.Add(time.Minute))
	sess.SetExpiresAt(fosite.AccessToken, now.Add(10*time.Minute))
	sess.SetExpiresAt(fosite.RefreshToken, now.Add(12*time.Hour))
	ru, _ := url.Parse("https://portal.example.gov.cn/oidc/callback")
	return &fosite.AuthorizeRequest{
		ResponseTypes: fosite.Arguments{"code"}, RedirectURI: ru, State: "af0ifjsldkj-3a8f",
		HandledResponseTypes: fosite.Arguments{"code"}, ResponseMode: fosite.ResponseModeQuery,
		Request: fosite.Request{
			ID: id, RequestedAt: now, Client: &fosite.DefaultClient{ID: "portal-zhejiang-rsj"},
			RequestedScope: fosite.Arguments{"openid", "profile", "essc.card"},
			GrantedScope:   fosite.Arguments{"openid", "profile", "essc.card"},
			Form: url.Values{"client_id": {"portal-zhejiang-rsj"}, "redirect_uri": {ru.String()},
				"scope": {"openid profile essc.card"}, "state": {"af0ifjsldkj-3a8f"}, "nonce": {"n-0S6_WzA2Mj"},
				"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"},
				"response_type": {"code"}},
			Session: sess,
		},
	}
}

func report(b *testing.B, cnt *counter, trips0, cmds0 int64) {
	b.ReportMetric(float64(cnt.trips.Load()-trips0)/float64(b.N), "roundtrips/op")
	b.ReportMetric(float64(cnt.cmds.Load()-cmds0)/float64(b.N), "cmds/op")
}

// BenchmarkCreateTokenSession: one access + one refresh token session (what
// a token response stores), indexes included.
func BenchmarkCreateTokenSession(b *testing.B) {
	s, _, cnt := benchStore(b)
	ctx := context.Background()
	r := realistic("req-bench").Sanitize(nil) // as fosite stores token sessions
	t0, c0 := cnt.trips.Load(), cnt.cmds.Load()
	b.ResetTimer()
	for i := range b.N {
		at, rt := fmt.Sprintf("at-%d", i), fmt.Sprintf("rt-%d", i)
		if err := s.CreateAccessTokenSession(ctx, at, r); err != nil {
			b.Fatal(err)
		}
		if err := s.CreateRefreshTokenSession(ctx, rt, at, r); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	report(b, cnt, t0, c0)
}

// BenchmarkRedeemCode: what the token endpoint does with a code: get it and
// invalidate it (exactly-once).
func BenchmarkRedeemCode(b *testing.B) {
	s, _, cnt := benchStore(b)
	ctx := context.Background()
	r := realistic("req-code")
	for i := range b.N {
		if err := s.CreateAuthorizeCodeSession(ctx, fmt.Sprintf("code-%d", i), r); err != nil {
			b.Fatal(err)
		}
	}
	t0, c0 := cnt.trips.Load(), cnt.cmds.Load()
	b.ResetTimer()
	for i := range b.N {
		code := fmt.Sprintf("code-%d", i)
		if _, err := s.GetAuthorizeCodeSession(ctx, code, nil); err != nil {
			b.Fatal(err)
		}
		if err := s.InvalidateAuthorizeCodeSession(ctx, code); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	report(b, cnt, t0, c0)
}

func qrData() []byte {
	enc, _ := storage.NewRequestCodec(nil, nil).Encode(realistic("req-qr"))
	return enc
}

// BenchmarkQRTransition: pending → scanned with a mutation (read + CAS
// write + publish), as the scan endpoint does.
func BenchmarkQRTransition(b *testing.B) {
	s, _, cnt := benchStore(b)
	ctx := context.Background()
	data := qrData()
	for i := range b.N {
		if _, err := s.CreateQR(ctx, storage.QRTransaction{ID: fmt.Sprintf("txn-%d", i), State: "pending",
			ClientID: "portal-zhejiang-rsj", BindingHash: make([]byte, 32), ExpiresAt: time.Now().Add(2 * time.Minute), Data: data}); err != nil {
			b.Fatal(err)
		}
	}
	t0, c0 := cnt.trips.Load(), cnt.cmds.Load()
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.TransitionQR(ctx, fmt.Sprintf("txn-%d", i), "pending", "scanned", func(q *storage.QRTransaction) error {
			q.Data = append(q.Data[:len(q.Data):len(q.Data)], `,"device":"d-1"`...)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	report(b, cnt, t0, c0)
}

// BenchmarkQRRedeem: approved → consumed without mutation (one script).
func BenchmarkQRRedeem(b *testing.B) {
	s, _, cnt := benchStore(b)
	ctx := context.Background()
	for i := range b.N {
		if _, err := s.CreateQR(ctx, storage.QRTransaction{ID: fmt.Sprintf("txn-%d", i), State: "approved",
			ExpiresAt: time.Now().Add(2 * time.Minute), Data: []byte("x")}); err != nil {
			b.Fatal(err)
		}
	}
	t0, c0 := cnt.trips.Load(), cnt.cmds.Load()
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.RedeemQR(ctx, fmt.Sprintf("txn-%d", i), "approved", "consumed"); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	report(b, cnt, t0, c0)
}

// BenchmarkFootprint reports Redis MEMORY USAGE per QR transaction (with a
// realistic encoded authorize request as Data), per access-token record,
// per refresh-token record (both as fosite stores them: Sanitize()d), per
// token session (access + refresh + their share of the request and subject
// indexes) and per authorize code record.
func BenchmarkFootprint(b *testing.B) {
	c := testClient(b).(*redis.Client)
	prefix := randomPrefix(b, c)
	client := &fosite.DefaultClient{ID: "portal-zhejiang-rsj"}
	s, err := redisstore.New(redisstore.Config{Client: c, Prefix: prefix,
		Lookup:     func(context.Context, string) (fosite.Client, error) { return client, nil },
		NewSession: func() fosite.Session { return openid.NewDefaultSession() }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	// Only this store's keys: other tests may share the database.
	usage := func(pattern string) int64 {
		keys, err := c.Keys(ctx, prefix+"*"+strings.TrimPrefix(pattern, "*:")).Result() // prefix, key format, kind
		if err != nil {
			b.Fatal(err)
		}
		var n int64
		for _, k := range keys {
			v, err := c.MemoryUsage(ctx, k, 0).Result()
			if err != nil {
				b.Fatal(err)
			}
			n += v
		}
		return n
	}
	for range b.N {
		if _, err := s.CreateQR(ctx, storage.QRTransaction{ID: "txn-footprint", State: "pending", ClientID: "portal-zhejiang-rsj",
			BindingHash: make([]byte, 32), ExpiresAt: time.Now().Add(2 * time.Minute), Data: qrData()}); err != nil && !isDup(err) {
			b.Fatal(err)
		}
		r := realistic("req-footprint")
		// An authorize response: the code, PKCE and OIDC records, one key.
		bctx, flush := storage.Batch(ctx, s)
		if err := errors.Join(s.CreateAuthorizeCodeSession(bctx, "code-footprint", r),
			s.CreatePKCERequestSession(bctx, "code-footprint", r.Sanitize([]string{"code_challenge", "code_challenge_method"})),
			s.CreateOpenIDConnectSession(bctx, "code-footprint", r.Sanitize([]string{"nonce", "max_age", "prompt", "acr_values", "display", "ui_locales", "login_hint", "id_token_hint"})),
			flush(ctx)); err != nil {
			b.Fatal(err)
		}
		if err := s.CreateAccessTokenSession(ctx, "at-footprint", r.Sanitize(nil)); err != nil {
			b.Fatal(err)
		}
		if err := s.CreateRefreshTokenSession(ctx, "rt-footprint", "at-footprint", r.Sanitize(nil)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	at, rt, idx := usage("*:at:{*"), usage("*:rt:{*"), usage("*:req:{*")+usage("*:sub:{*")
	b.ReportMetric(float64(usage("*:qr:{*")), "bytes/qr-txn")
	b.ReportMetric(float64(usage("*:ac:{*")), "bytes/code+pkce+oidc")
	b.ReportMetric(float64(at), "bytes/access")
	b.ReportMetric(float64(rt), "bytes/refresh")
	b.ReportMetric(float64(at+rt+idx), "bytes/token-session")
	b.ReportMetric(float64(len(qrData())), "bytes/encoded-request")
}

func isDup(err error) bool { return errors.Is(err, storage.ErrDuplicate) }

// BenchmarkParallelCreateTokenSession: throughput with concurrent callers
// (GOMAXPROCS×8 goroutines), the shape of a busy token endpoint.
func BenchmarkParallelCreateTokenSession(b *testing.B) {
	s, _, cnt := benchStore(b)
	ctx := context.Background()
	r := realistic("req-bench").Sanitize(nil)
	var n atomic.Int64
	t0, c0 := cnt.trips.Load(), cnt.cmds.Load()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			at, rt := fmt.Sprintf("at-%d", i), fmt.Sprintf("rt-%d", i)
			if err := s.CreateAccessTokenSession(ctx, at, r); err != nil {
				b.Error(err)
				return
			}
			if err := s.CreateRefreshTokenSession(ctx, rt, at, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	report(b, cnt, t0, c0)
}

// BenchmarkParallelRedeemCode: get + invalidate under concurrency.
func BenchmarkParallelRedeemCode(b *testing.B) {
	s, _, cnt := benchStore(b)
	ctx := context.Background()
	r := realistic("req-code")
	for i := range b.N {
		if err := s.CreateAuthorizeCodeSession(ctx, fmt.Sprintf("code-%d", i), r); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	t0, c0 := cnt.trips.Load(), cnt.cmds.Load()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			code := fmt.Sprintf("code-%d", n.Add(1)-1)
			if _, err := s.GetAuthorizeCodeSession(ctx, code, nil); err != nil {
				b.Error(err)
				return
			}
			if err := s.InvalidateAuthorizeCodeSession(ctx, code); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	report(b, cnt, t0, c0)
}

// BenchmarkParallelQRTransition: pending → scanned with mutation under
// concurrency (distinct transactions).
func BenchmarkParallelQRTransition(b *testing.B) {
	s, _, cnt := benchStore(b)
	ctx := context.Background()
	data := qrData()
	for i := range b.N {
		if _, err := s.CreateQR(ctx, storage.QRTransaction{ID: fmt.Sprintf("txn-%d", i), State: "pending",
			ExpiresAt: time.Now().Add(2 * time.Minute), Data: data}); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	t0, c0 := cnt.trips.Load(), cnt.cmds.Load()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("txn-%d", n.Add(1)-1)
			if _, err := s.TransitionQR(ctx, id, "pending", "scanned", func(q *storage.QRTransaction) error {
				q.Data = append(q.Data[:len(q.Data):len(q.Data)], `,"device":"d-1"`...)
				return nil
			}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	report(b, cnt, t0, c0)
}
