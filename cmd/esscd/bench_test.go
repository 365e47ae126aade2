package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/essc-project/essc/idp/wallet/client"
)

// BenchmarkQRLogin runs full QR logins through the real HTTP stack on
// loopback: authorize → QR page → frame → phone scan (device proof) →
// browser status → phone confirm with PIN → browser complete → code
// exchange with an SM2SM3 client assertion → userinfo. Each phone is its
// own card, so PIN counters and replay caches are per holder as in life.
// With ESSC_TEST_REDIS_URL and ESSC_TEST_DATABASE_URL set it also runs on
// Redis + PostgreSQL.
func BenchmarkQRLogin(b *testing.B) {
	// One load generator on one IP: lift the per-IP transaction limit.
	unlimited := func(c *FileConfig) { c.QR.TxnPerIPPerMinute = 1 << 30 }
	b.Run("embedded", func(b *testing.B) { benchQRLogin(b, newStack(b, "", "", unlimited)) })
	if r, d := os.Getenv("ESSC_TEST_REDIS_URL"), os.Getenv("ESSC_TEST_DATABASE_URL"); r != "" && d != "" {
		b.Run("redis+postgres", func(b *testing.B) { benchQRLogin(b, newStack(b, postgresSchema(b, d), r, unlimited)) })
	}
}

func benchQRLogin(b *testing.B, s *stack) {
	const phones = 64 // each device may scan 20 times a minute (qrlogin.DefaultLimits)
	apps := make(chan *client.Client, phones)
	for i := range phones {
		prefix, number := fmt.Sprintf("41010519600115%03d", i), fmt.Sprintf("B%08d", i)
		s.issue(b, prefix, number)
		apps <- s.phone(b, prefix, number, "258147")
	}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			app := <-apps
			br := s.browser(b)
			br.authorize(nil)
			v, err := app.Scan(ctx, br.payload())
			if err != nil {
				b.Fatal(err)
			}
			if err := app.Confirm(ctx, v.Txn, br.number(), "258147"); err != nil {
				b.Fatal(err)
			}
			apps <- app
			code, err := br.complete()
			if err != nil {
				b.Fatal(err)
			}
			tok, status := br.exchange(code)
			if status != 200 {
				b.Fatalf("token %d %v", status, tok)
			}
			if c := userinfo(b, s.base+"/gm/userinfo", tok["access_token"].(string)); c != 200 {
				b.Fatalf("userinfo %d", c)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "logins/s")
}
