package sql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/essc-project/essc/storage"
	"github.com/essc-project/essc/storage/registrytest"
)

// entEngines opens a fresh store per engine: SQLite always, PostgreSQL when
// ESSC_TEST_DATABASE_URL is set (a fresh schema, dropped afterwards).
func entEngines(t testing.TB, now func() time.Time) map[string]func(t testing.TB) *Store {
	open := func(t testing.TB, url string) *Store {
		secrets, err := LoadOrCreateSecrets(filepath.Join(t.TempDir(), "keys"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(context.Background(), Config{URL: url, Secrets: secrets, Now: now,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	m := map[string]func(t testing.TB) *Store{
		"sqlite": func(t testing.TB) *Store { return open(t, "sqlite://"+filepath.Join(t.TempDir(), "e.db")) },
	}
	if url := os.Getenv("ESSC_TEST_DATABASE_URL"); url != "" {
		m["postgres"] = func(t testing.TB) *Store { return open(t, registrytest.PostgresSchema(t, url)) }
	}
	return m
}

// synthSSN is a valid-shaped SSN for index i (the store does not validate).
func synthSSN(i int) string { return fmt.Sprintf("3301061950%08d", i) }

func TestEntitlementStore(t *testing.T) {
	var mu sync.Mutex
	clock := time.Date(2024, 3, 15, 2, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	for name, open := range entEngines(t, now) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			b := storage.Beneficiary{AgencyID: "a1", SSN: synthSSN(1), Benefit: "enterprise_pension", Status: storage.EntitlementCertified,
				Anchor: clock, CertifiedAt: clock, DueFrom: clock.AddDate(1, 0, 0), ValidUntil: clock.AddDate(1, 2, 0)}
			var created storage.Beneficiary
			if err := s.EntitlementTx(ctx, func(tx storage.EntitlementTx) error {
				var err error
				if created, err = tx.CreateBeneficiary(ctx, b); err != nil {
					return err
				}
				_, err = tx.AppendEntitlementEvent(ctx, storage.EntitlementEvent{AgencyID: "a1", BeneficiaryID: created.ID, Type: "beneficiary.registered"})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if created.SSNMasked != "3301**********0001" {
				t.Fatalf("masked %q", created.SSNMasked)
			}
			t.Run("fail/duplicate", func(t *testing.T) {
				err := s.EntitlementTx(ctx, func(tx storage.EntitlementTx) error { _, err := tx.CreateBeneficiary(ctx, b); return err })
				if !errors.Is(err, storage.ErrDuplicate) {
					t.Fatalf("duplicate = %v", err)
				}
			})
			t.Run("fail/other agency", func(t *testing.T) {
				if _, err := s.Beneficiary(ctx, "a2", created.ID); !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("other agency read = %v", err)
				}
				err := s.EntitlementTx(ctx, func(tx storage.EntitlementTx) error {
					c := created
					c.AgencyID = "a2"
					_, err := tx.UpdateBeneficiary(ctx, c)
					return err
				})
				if !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("other agency update = %v", err)
				}
			})
			t.Run("fail/stale version", func(t *testing.T) {
				err := s.EntitlementTx(ctx, func(tx storage.EntitlementTx) error {
					c := created
					c.Version = 7
					_, err := tx.UpdateBeneficiary(ctx, c)
					return err
				})
				if !errors.Is(err, storage.ErrConflict) {
					t.Fatalf("stale update = %v", err)
				}
			})
			t.Run("ok/rollback drops the event", func(t *testing.T) {
				boom := errors.New("boom")
				err := s.EntitlementTx(ctx, func(tx storage.EntitlementTx) error {
					if _, err := tx.AppendEntitlementEvent(ctx, storage.EntitlementEvent{AgencyID: "a1", Type: "x"}); err != nil {
						return err
					}
					return boom
				})
				if !errors.Is(err, boom) {
					t.Fatal(err)
				}
				evs, _ := s.EntitlementEvents(ctx, "a1", 0, 10)
				if len(evs) != 1 {
					t.Fatalf("events after rollback: %d", len(evs))
				}
			})
			t.Run("ok/batch and fan-out", func(t *testing.T) {
				got, err := s.BeneficiariesBySSN(ctx, "a1", []string{synthSSN(1), synthSSN(2), synthSSN(1)})
				if err != nil || len(got) != 1 || got[0].SSN != synthSSN(1) || got[0].ID != created.ID {
					t.Fatalf("batch %+v %v", got, err)
				}
				if got, _ := s.BeneficiariesBySSN(ctx, "a2", []string{synthSSN(1)}); len(got) != 0 {
					t.Fatal("batch crossed agencies")
				}
				all, err := s.BeneficiariesOfSSN(ctx, synthSSN(1))
				if err != nil || len(all) != 1 {
					t.Fatalf("fan-out %v %v", all, err)
				}
			})
			t.Run("ok/sweep candidates", func(t *testing.T) {
				if got, _ := s.BeneficiariesToSweep(ctx, clock, 10); len(got) != 0 {
					t.Fatalf("sweep before due: %d", len(got))
				}
				if got, _ := s.BeneficiariesToSweep(ctx, clock.AddDate(1, 0, 1), 10); len(got) != 1 {
					t.Fatalf("sweep after due: %d", len(got))
				}
			})
			t.Run("ok/webhook leases", func(t *testing.T) {
				c1, err := s.ClaimWebhookTargets(ctx, "o1", time.Minute, 10)
				if err != nil || len(c1) != 1 || c1[0].AgencyID != "a1" || c1[0].Cursor != 0 {
					t.Fatalf("claim %+v %v", c1, err)
				}
				if c2, _ := s.ClaimWebhookTargets(ctx, "o2", time.Minute, 10); len(c2) != 0 {
					t.Fatal("second owner claimed a leased agency")
				}
				if err := s.AckWebhook(ctx, "a1", "o2", 1); !errors.Is(err, storage.ErrWebhookLeaseLost) {
					t.Fatalf("ack by non-owner = %v", err)
				}
				dead, err := s.FailWebhook(ctx, "a1", "o1", 1, "down", clock.Add(time.Second), 2)
				if err != nil || dead {
					t.Fatalf("fail 1 = %v %v", dead, err)
				}
				if c, _ := s.ClaimWebhookTargets(ctx, "o2", time.Minute, 10); len(c) != 0 {
					t.Fatal("claimed before the retry time")
				}
				advance(2 * time.Second)
				c2, _ := s.ClaimWebhookTargets(ctx, "o2", time.Minute, 10)
				if len(c2) != 1 || c2[0].Attempts != 1 {
					t.Fatalf("claim after backoff %+v", c2)
				}
				dead, err = s.FailWebhook(ctx, "a1", "o2", 1, "down", clock, 2)
				if err != nil || !dead {
					t.Fatalf("fail 2 = %v %v", dead, err)
				}
				if dl, _ := s.WebhookDeadLetters(ctx, "a1", 0, 10); len(dl) != 1 || dl[0].Seq != 1 || dl[0].Attempts != 2 {
					t.Fatalf("dead letters %+v", dl)
				}
				if c, _ := s.ClaimWebhookTargets(ctx, "o1", time.Minute, 10); len(c) != 0 {
					t.Fatal("claimed with nothing after the cursor")
				}
				if err := s.RedeliverWebhooks(ctx, "a1", 1); err != nil {
					t.Fatal(err)
				}
				c3, _ := s.ClaimWebhookTargets(ctx, "o1", time.Minute, 10)
				if len(c3) != 1 || c3[0].Cursor != 0 {
					t.Fatalf("claim after redeliver %+v", c3)
				}
				if err := s.RedeliverWebhooks(ctx, "a1", 1); err != nil {
					t.Fatal(err)
				}
				if err := s.AckWebhook(ctx, "a1", "o1", 1); !errors.Is(err, storage.ErrWebhookLeaseLost) {
					t.Fatalf("ack after redeliver dropped the lease = %v", err)
				}
				advance(2 * time.Minute)
				if dl, _ := s.WebhookDeadLetters(ctx, "a1", 0, 10); len(dl) != 0 {
					t.Fatalf("dead letters after redeliver %d", len(dl))
				}
			})
			t.Run("ok/concurrent appends keep seq order", func(t *testing.T) {
				var wg sync.WaitGroup
				for g := 0; g < 4; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < 10; i++ {
							_ = s.EntitlementTx(ctx, func(tx storage.EntitlementTx) error {
								_, err := tx.AppendEntitlementEvent(ctx, storage.EntitlementEvent{AgencyID: "a3", Type: "t"})
								return err
							})
						}
					}()
				}
				wg.Wait()
				evs, _ := s.EntitlementEvents(ctx, "a3", 0, 100)
				if len(evs) != 40 {
					t.Fatalf("events %d", len(evs))
				}
			})
		})
	}
}

// loadBeneficiaries bulk-inserts n beneficiaries of agency "bench" (COPY on
// PostgreSQL, multi-row INSERT on SQLite) — a benchmark loader, not an API.
func loadBeneficiaries(b *testing.B, s *Store, n int) {
	ctx := context.Background()
	now := time.Now().UTC()
	cols := []string{"id", "agency_id", "ssn_index", "ssn_masked", "holder_id", "benefit", "anchor", "status",
		"certified_at", "due_from", "valid_until", "version", "created_at", "updated_at"}
	row := func(i int) []any {
		v := now.AddDate(0, i%12, 0).UnixMicro()
		return []any{fmt.Sprintf("b%09d", i), "bench", s.blindIndex(synthSSN(i)), maskSSN(synthSSN(i)), "", "enterprise_pension",
			now.UnixMicro(), "certified", now.UnixMicro(), v - 1, v, int64(1), now.UnixMicro(), now.UnixMicro()}
	}
	const chunk = 50000
	for start := 0; start < n; start += chunk {
		end := min(start+chunk, n)
		if s.dialect == postgres {
			conn, err := s.db.Conn(ctx)
			if err != nil {
				b.Fatal(err)
			}
			err = conn.Raw(func(dc any) error {
				_, err := dc.(*stdlib.Conn).Conn().CopyFrom(ctx, pgx.Identifier{"beneficiaries"}, cols,
					pgx.CopyFromSlice(end-start, func(i int) ([]any, error) { return row(start + i), nil }))
				return err
			})
			conn.Close()
			if err != nil {
				b.Fatal(err)
			}
			continue
		}
		err := s.Tx(ctx, func(tx storage.RegistryTx) error {
			t := tx.(*q)
			const per = 500
			for i := start; i < end; i += per {
				k := min(per, end-i)
				q := "INSERT INTO beneficiaries (id, agency_id, ssn_index, ssn_masked, holder_id, benefit, anchor, status, certified_at, due_from, valid_until, version, created_at, updated_at) VALUES "
				args := make([]any, 0, k*len(cols))
				for j := 0; j < k; j++ {
					if j > 0 {
						q += ","
					}
					q += "(?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
					args = append(args, row(i+j)...)
				}
				if _, err := t.exec(ctx, q, args...); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if s.dialect == postgres {
		if _, err := s.db.ExecContext(ctx, `ANALYZE beneficiaries`); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEntitlementBatchStatus loads ESSC_BENCH_BENEFICIARIES (default
// 100,000) beneficiaries and measures BeneficiariesBySSN with 10,000 random
// SSNs per call (blind index per SSN + the indexed query + row decoding).
//
//	ESSC_TEST_DATABASE_URL=... ESSC_BENCH_BENEFICIARIES=1000000 ESSC_BENCH_ENGINE=postgres \
//	  go test -run '^$' -bench EntitlementBatchStatus -benchtime 20x ./storage/sql/
//
// Metric subjects/s is SSNs answered per second by one call stream.
func BenchmarkEntitlementBatchStatus(b *testing.B) {
	n := 100000
	if v := os.Getenv("ESSC_BENCH_BENEFICIARIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 10000 {
			b.Fatalf("ESSC_BENCH_BENEFICIARIES=%q", v)
		}
	}
	only := os.Getenv("ESSC_BENCH_ENGINE") // "sqlite" or "postgres": load only that one
	for name, open := range entEngines(b, nil) {
		if only != "" && only != name {
			continue
		}
		s := open(b) // loaded once: the sub-benchmark body runs several times
		t0 := time.Now()
		loadBeneficiaries(b, s, n)
		b.Logf("%s: loaded %d beneficiaries in %v (%.0f rows/s)", name, n, time.Since(t0).Round(time.Millisecond), float64(n)/time.Since(t0).Seconds())
		b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			const batch = 10000
			ssns := make([]string, batch)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for j := range ssns {
					ssns[j] = synthSSN(rng.IntN(n))
				}
				b.StartTimer()
				got, err := s.BeneficiariesBySSN(context.Background(), "bench", ssns)
				if err != nil || len(got) < batch*9/10 {
					b.Fatalf("batch: %d %v", len(got), err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "subjects/s")
		})
	}
}

// BenchmarkEntitlementFeed appends 100,000 events for one agency and
// measures reading the whole feed in pages of 1,000 from cursor 0.
func BenchmarkEntitlementFeed(b *testing.B) {
	const events = 100000
	for name, open := range entEngines(b, nil) {
		b.Run(name, func(b *testing.B) {
			s := open(b)
			ctx := context.Background()
			for start := 0; start < events; start += 5000 {
				if err := s.EntitlementTx(ctx, func(tx storage.EntitlementTx) error {
					for i := 0; i < 5000; i++ {
						if _, err := tx.AppendEntitlementEvent(ctx, storage.EntitlementEvent{AgencyID: "bench", BeneficiaryID: fmt.Sprintf("b%d", start+i),
							Type: "beneficiary.certified", Payload: []byte(`{"status":"certified","valid_until":1767196800,"benefit":"enterprise_pension"}`)}); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var cur int64
				read := 0
				for {
					evs, err := s.EntitlementEvents(ctx, "bench", cur, 1000)
					if err != nil {
						b.Fatal(err)
					}
					if len(evs) == 0 {
						break
					}
					read += len(evs)
					cur = evs[len(evs)-1].Seq
				}
				if read != events {
					b.Fatalf("read %d", read)
				}
			}
			b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
