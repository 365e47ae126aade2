package sql_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/essc-project/essc/storage"
	essql "github.com/essc-project/essc/storage/sql"
)

// BenchmarkRegistryScale loads ESSC_BENCH_ROWS synthetic cards (default
// 100,000; one holder per card) through ImportCards and then measures point
// lookups at that size. Run it once per engine:
//
//	ESSC_BENCH_ROWS=1000000 go test -run '^$' -bench RegistryScale -benchtime 1x ./storage/sql/
//
// Metrics: import rows/s, and p50/p99 latency (µs) of CardByNumber and
// HolderBySSN (blind index + SM4-GCM decryption) over 20,000 random lookups.
func BenchmarkRegistryScale(b *testing.B) {
	rows := 100000
	if v := os.Getenv("ESSC_BENCH_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("ESSC_BENCH_ROWS=%q", v)
		}
		rows = n
	}
	engines := map[string]func(b *testing.B) string{
		"sqlite": func(b *testing.B) string { return "sqlite://" + filepath.Join(b.TempDir(), "bench.db") },
	}
	if os.Getenv("ESSC_TEST_DATABASE_URL") != "" {
		engines["postgres"] = func(b *testing.B) string { return newPGSchema(b, os.Getenv("ESSC_TEST_DATABASE_URL")) }
	}
	for _, name := range []string{"sqlite", "postgres"} {
		mk, ok := engines[name]
		if !ok {
			continue
		}
		b.Run(fmt.Sprintf("%s/rows=%d", name, rows), func(b *testing.B) {
			for range b.N {
				benchScale(b, mk(b), rows)
			}
		})
	}
}

func benchSSN(i int) string { return fmt.Sprintf("4113011950%08d", i) }

func benchScale(b *testing.B, url string, n int) {
	ctx := context.Background()
	s, err := essql.Open(ctx, essql.Config{URL: url, Secrets: testSecrets(b), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const chunk = 20000
	batch := make([]storage.CardImport, 0, chunk)
	issued := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	verifier := make([]byte, 32)
	start := time.Now()
	for i := 0; i < n; i++ {
		batch = append(batch, storage.CardImport{Line: i + 2, SSN: benchSSN(i), Name: "持卡人", Number: fmt.Sprintf("B%08d", i),
			Region: "411301", IssuedOn: issued, PINVerifier: verifier})
		if len(batch) == chunk || i == n-1 {
			res, err := s.ImportCards(ctx, batch)
			if err != nil {
				b.Fatal(err)
			}
			if res.Inserted != len(batch) {
				b.Fatalf("inserted %d of %d", res.Inserted, len(batch))
			}
			batch = batch[:0]
		}
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(n)/elapsed.Seconds(), "import-rows/s")

	const lookups = 20000
	rng := rand.New(rand.NewPCG(1, 2))
	lat := make([]time.Duration, lookups)
	for i := range lat {
		k := rng.IntN(n)
		t0 := time.Now()
		c, err := s.CardByNumber(ctx, fmt.Sprintf("B%08d", k))
		lat[i] = time.Since(t0)
		if err != nil || c.Number == "" {
			b.Fatal(err)
		}
	}
	p50, p99 := percentiles(lat)
	b.ReportMetric(p50, "card-p50-µs")
	b.ReportMetric(p99, "card-p99-µs")
	for i := range lat {
		k := rng.IntN(n)
		t0 := time.Now()
		h, err := s.HolderBySSN(ctx, benchSSN(k))
		lat[i] = time.Since(t0)
		if err != nil || h.SSN != benchSSN(k) {
			b.Fatal(err)
		}
	}
	p50, p99 = percentiles(lat)
	b.ReportMetric(p50, "ssn-p50-µs")
	b.ReportMetric(p99, "ssn-p99-µs")
	b.ReportMetric(0, "ns/op") // the per-iteration time is the whole load: not meaningful
}

func percentiles(d []time.Duration) (p50, p99 float64) {
	s := slices.Clone(d)
	slices.Sort(s)
	us := func(x time.Duration) float64 { return float64(x.Nanoseconds()) / 1e3 }
	return us(s[len(s)*50/100]), us(s[len(s)*99/100])
}

// BenchmarkClient is the hot GetClient path of every token request.
func BenchmarkClient(b *testing.B) {
	ctx := context.Background()
	s, err := essql.Open(ctx, essql.Config{URL: "sqlite://" + filepath.Join(b.TempDir(), "c.db"), Secrets: testSecrets(b),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	err = s.Tx(ctx, func(tx storage.RegistryTx) error {
		_, err := tx.CreateClient(ctx, storage.Client{ID: "portal", Profile: storage.ProfileIntl, RedirectURIs: []string{"https://p/cb"},
			Scopes: []string{"openid", "profile"}, GrantTypes: []string{"authorization_code"}})
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := s.Client(ctx, "portal"); err != nil {
			b.Fatal(err)
		}
	}
}
