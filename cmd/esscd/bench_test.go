package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/idp/wallet/client"
)

// BenchmarkQRLogin runs full QR logins through the real HTTP stack on
// loopback: authorize → QR page → frame → phone scan (device proof) →
// browser status → phone confirm with PIN → browser complete → code
// exchange with an SM2SM3 client assertion → userinfo. Each phone is its
// own card, so PIN counters and replay caches are per holder as in life.
// It reports logins/s, p50/p99 per step and, on Redis, Redis commands per
// login (INFO commandstats delta). With ESSC_TEST_REDIS_URL and
// ESSC_TEST_DATABASE_URL set it also runs on Redis + PostgreSQL.
func BenchmarkQRLogin(b *testing.B) {
	// One load generator on one IP: lift the per-IP transaction limit.
	unlimited := func(c *FileConfig) { c.QR.TxnPerIPPerMinute = 1 << 30 }
	b.Run("embedded", func(b *testing.B) { benchQRLogin(b, newStack(b, "", "", unlimited), "") })
	if r, d := os.Getenv("ESSC_TEST_REDIS_URL"), os.Getenv("ESSC_TEST_DATABASE_URL"); r != "" && d != "" {
		b.Run("redis+postgres", func(b *testing.B) { benchQRLogin(b, newStack(b, postgresSchema(b, d), r, unlimited), r) })
	}
}

// stepTimes collects per-step latencies from parallel workers.
type stepTimes struct {
	mu sync.Mutex
	d  map[string][]time.Duration
}

func (s *stepTimes) time(step string, f func()) {
	t0 := time.Now()
	f()
	d := time.Since(t0)
	s.mu.Lock()
	s.d[step] = append(s.d[step], d)
	s.mu.Unlock()
}

func (s *stepTimes) report(b *testing.B) {
	for step, ds := range s.d {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, step+"-p50-ms")
		b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, step+"-p99-ms")
	}
}

// redisCommands is the server-wide command count (INFO commandstats).
func redisCommands(b *testing.B, url string) int64 {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	c := goredis.NewClient(opt)
	defer c.Close()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		if _, rest, ok := strings.Cut(line, ":calls="); ok {
			v, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			n += v
		}
	}
	return n
}

func benchQRLogin(b *testing.B, s *stack, redisURL string) {
	const phones = 64 // each device may scan 20 times a minute (qrlogin.DefaultLimits)
	apps := make(chan *client.Client, phones)
	for i := range phones {
		prefix, number := fmt.Sprintf("41010519600115%03d", i), fmt.Sprintf("B%08d", i)
		s.issue(b, prefix, number)
		apps <- s.phone(b, prefix, number, "258147")
	}
	ctx := context.Background()
	st := &stepTimes{d: map[string][]time.Duration{}}
	var cmds0 int64
	if redisURL != "" {
		cmds0 = redisCommands(b, redisURL) + 1 // +1: this INFO call itself
	}
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			app := <-apps
			br := s.browser(b)
			var payload, code string
			var number int
			var err error
			st.time("authorize", func() { br.authorize(nil) })
			st.time("frame", func() { payload = br.payload() })
			var txn string
			st.time("scan", func() {
				v, e := app.Scan(ctx, payload)
				txn, err = v.Txn, e
			})
			if err != nil {
				b.Fatal(err)
			}
			st.time("status", func() { number = br.number() })
			st.time("confirm", func() { err = app.Confirm(ctx, txn, number, "258147") })
			if err != nil {
				b.Fatal(err)
			}
			apps <- app
			st.time("complete", func() { code, err = br.complete() })
			if err != nil {
				b.Fatal(err)
			}
			var tok map[string]any
			var status int
			st.time("token", func() { tok, status = br.exchange(code) })
			if status != 200 {
				b.Fatalf("token %d %v", status, tok)
			}
			st.time("userinfo", func() {
				if c := userinfo(b, s.base+"/gm/userinfo", tok["access_token"].(string)); c != 200 {
					b.Fatalf("userinfo %d", c)
				}
			})
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "logins/s")
	if redisURL != "" {
		b.ReportMetric(float64(redisCommands(b, redisURL)-cmds0)/float64(b.N), "redis-cmds/login")
	}
	st.report(b)
}
