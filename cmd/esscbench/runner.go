package main

import (
	"context"
	"maps"
	"math"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ScenarioResult is one scenario's measured figures.
type ScenarioResult struct {
	Name       string         `json:"name"`
	Workers    int            `json:"workers"`
	Ops        int            `json:"ops"`       // successful operations
	Errors     map[string]int `json:"errors"`    // failed operations by kind
	Seconds    float64        `json:"seconds"`   // wall time of the measured phase
	OpsPerSec  float64        `json:"ops_per_s"` // successful operations per second
	ReqPerSec  float64        `json:"req_per_s"` // HTTP requests of successful steps per second
	ItemsPerOp int            `json:"items_per_op"`
	Op         StepStats      `json:"op"` // whole-operation latency
	Steps      []StepStats    `json:"steps"`
	// ServerCPUMSPerOp is the server's CPU time (user+system) per successful
	// operation, from process_cpu_seconds_total; -1 when not measured.
	ServerCPUMSPerOp float64 `json:"server_cpu_ms_per_op"`
	// RedisCmdsPerOp is Redis commands per operation (all clients of that
	// Redis); -1 when --redis-addr was not given.
	RedisCmdsPerOp float64 `json:"redis_cmds_per_op"`
	// RedisCPUMSPerOp and PostgresCPUMSPerOp are the Redis server's (INFO
	// cpu) and the PostgreSQL server's (its processes' /proc times: spawned
	// on this machine only) CPU time per operation; -1 when not measured.
	RedisCPUMSPerOp    float64 `json:"redis_cpu_ms_per_op"`
	PostgresCPUMSPerOp float64 `json:"postgres_cpu_ms_per_op"`
	RSSMiB             float64 `json:"server_rss_mib"` // after the run
	// LoadCPUMSPerOp is this tool's own CPU time (user+system, getrusage) per
	// successful operation: the simulated browsers, phones and relying
	// parties share the machine with the server, so the two together bound
	// the throughput; -1 when not measured.
	LoadCPUMSPerOp float64 `json:"load_cpu_ms_per_op"`
	// ThroughputRatio is OpsPerSec × the reference SM2 sign time: operations
	// completed per reference-sign-time. CPURatio is ServerCPU per op ÷ the
	// reference sign CPU time: how many raw SM2 signatures' worth of server
	// CPU one operation costs. Both are what bench-check compares.
	ThroughputRatio float64 `json:"throughput_ratio"`
	CPURatio        float64 `json:"cpu_ratio"`
	// CryptoFloorMS is the CPU of the SM2 operations one operation needs
	// on the server (sm2Ops) at the reference's thread CPU per operation:
	// issue 9's cryptographic floor. 0 for scenarios not in sm2Ops.
	CryptoFloorMS float64 `json:"crypto_floor_ms,omitempty"`
}

// sm2Ops is the server's SM2 verifications and signatures per operation of
// the scenarios whose cryptography is all SM2: a QR login verifies two
// device proofs and the client assertion and signs the ID token and the
// access token; a gm client_credentials token verifies the assertion and
// signs the access token.
var sm2Ops = map[string]struct{ verify, sign int }{
	"qr-login":              {3, 2},
	"qr-login-sse":          {3, 2},
	"client_credentials_gm": {1, 1},
}

// ErrorCount is the number of failed operations.
func (r ScenarioResult) ErrorCount() int {
	n := 0
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// observer reads the server-side counters around a run.
type observer struct {
	e     *env
	redis *goredis.Client // nil: not measured
	pgPID int             // the PostgreSQL postmaster; 0: not measured
}

type snapshot struct {
	stats      serverStats
	ok         bool
	cmds       int64
	cmdOK      bool
	redisCPU   float64
	redisCPUOK bool
	pgCPU      float64
	pgOK       bool
}

func (o *observer) snap(ctx context.Context) snapshot {
	var s snapshot
	var err error
	s.stats, err = scrape(ctx, o.e.http, o.e.base)
	s.ok = err == nil
	if o.redis != nil {
		s.cmds, err = redisCommands(ctx, o.redis)
		s.cmdOK = err == nil
		s.redisCPU, err = redisCPU(ctx, o.redis) // after the count: the next snapshot's count includes it
		s.redisCPUOK = err == nil
	}
	if o.pgPID > 0 {
		s.pgCPU, err = procTreeCPU(o.pgPID)
		s.pgOK = err == nil
	}
	return s
}

// runScenario warms up, then runs op on cfg.Workers workers until the
// request count or the duration is reached, and summarises.
func runScenario(ctx context.Context, e *env, obs *observer, name string, items int, op opFunc, profile func(context.Context)) ScenarioResult {
	cfg := e.cfg
	// Warm-up: connections, caches, JIT-free but lazy paths. Untimed.
	warm := newRecorder()
	for i := range min(cfg.Warmup, 1000) {
		if op(ctx, i%cfg.Workers, warm) != nil && ctx.Err() != nil {
			break
		}
	}
	before := obs.snap(ctx)
	selfBefore, selfOK := selfCPU()
	var remaining atomic.Int64
	count := cfg.opsFor(name)
	remaining.Store(int64(count))
	deadline := time.Now().Add(cfg.Duration)
	recs := make([]*recorder, cfg.Workers)
	var wg sync.WaitGroup
	pctx, stopProfile := context.WithCancel(ctx)
	if profile != nil {
		wg.Go(func() { profile(pctx) })
	}
	start := time.Now()
	var starts <-chan time.Time // open loop: scheduled start times
	if cfg.Rate > 0 {
		starts = schedule(ctx, cfg.Rate, count, deadline)
	}
	var work sync.WaitGroup
	for w := range cfg.Workers {
		rec := newRecorder()
		recs[w] = rec
		work.Go(func() {
			for ctx.Err() == nil {
				var t0 time.Time
				switch {
				case starts != nil:
					var ok bool
					if t0, ok = <-starts; !ok {
						return
					}
				case count > 0 && remaining.Add(-1) < 0:
					return
				case count == 0 && !time.Now().Before(deadline):
					return
				default:
					t0 = time.Now()
				}
				if err := op(ctx, w, rec); err != nil {
					rec.errors[errKind(err)]++
					continue
				}
				rec.ops++
				rec.add("\x00op", time.Since(t0))
			}
		})
	}
	work.Wait()
	elapsed := time.Since(start)
	selfAfter, selfOK2 := selfCPU()
	stopProfile()
	wg.Wait()
	after := obs.snap(ctx)

	all := newRecorder()
	for _, r := range recs {
		all.merge(r)
	}
	res := ScenarioResult{Name: name, Workers: cfg.Workers, Ops: all.ops, Errors: maps.Clone(all.errors),
		Seconds: round(elapsed.Seconds(), 3), ItemsPerOp: items, ServerCPUMSPerOp: -1, RedisCmdsPerOp: -1, LoadCPUMSPerOp: -1,
		RedisCPUMSPerOp: -1, PostgresCPUMSPerOp: -1}
	if selfOK && selfOK2 && all.ops > 0 {
		res.LoadCPUMSPerOp = round((selfAfter-selfBefore).Seconds()*1000/float64(all.ops), 4)
	}
	requests := 0
	for _, n := range all.order {
		if n == "\x00op" {
			res.Op = Summarise("op", all.steps[n])
			continue
		}
		requests += len(all.steps[n])
		res.Steps = append(res.Steps, Summarise(n, all.steps[n]))
	}
	if s := elapsed.Seconds(); s > 0 {
		res.OpsPerSec = round(float64(all.ops)/s, 1)
		res.ReqPerSec = round(float64(requests)/s, 1)
	}
	if before.ok && after.ok {
		if all.ops > 0 {
			res.ServerCPUMSPerOp = round((after.stats.CPUSeconds-before.stats.CPUSeconds)*1000/float64(all.ops), 4)
		}
		res.RSSMiB = round(after.stats.RSSBytes/(1<<20), 1)
	}
	if before.cmdOK && after.cmdOK && all.ops > 0 {
		own := int64(1) // the first snapshot's INFO commandstats
		if before.redisCPUOK {
			own++ // and its INFO cpu
		}
		res.RedisCmdsPerOp = round(float64(after.cmds-before.cmds-own)/float64(all.ops), 2)
	}
	if before.redisCPUOK && after.redisCPUOK && all.ops > 0 {
		res.RedisCPUMSPerOp = round((after.redisCPU-before.redisCPU)*1000/float64(all.ops), 4)
	}
	if before.pgOK && after.pgOK && all.ops > 0 {
		res.PostgresCPUMSPerOp = round((after.pgCPU-before.pgCPU)*1000/float64(all.ops), 4)
	}
	return res
}

// schedule sends the start time of each operation at rate per second, from
// now until count operations (count > 0) or the deadline, then closes. The
// channel holds two seconds of starts, so a slow server makes operations
// queue (their latency counts from the scheduled start, as a client with a
// fixed arrival rate sees it) instead of slowing the schedule down.
func schedule(ctx context.Context, rate float64, count int, deadline time.Time) <-chan time.Time {
	c := make(chan time.Time, max(1024, int(2*rate)))
	interval := time.Duration(float64(time.Second) / rate)
	go func() {
		defer close(c)
		next := time.Now()
		for i := 0; count == 0 || i < count; i++ {
			if count == 0 && !next.Before(deadline) {
				return
			}
			if d := time.Until(next); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
			select {
			case c <- next:
			case <-ctx.Done():
				return
			}
			next = next.Add(interval)
		}
	}()
	return c
}

// applyReference fills the ratios from the run's reference measurement.
func (r *ScenarioResult) applyReference(ref Reference) {
	if ref.SM2SignNS <= 0 {
		return
	}
	r.ThroughputRatio = round(r.OpsPerSec*ref.SM2SignNS/1e9, 5)
	cpuRef := ref.SM2SignCPUNS
	if cpuRef <= 0 {
		cpuRef = ref.SM2SignNS
	}
	if r.ServerCPUMSPerOp > 0 {
		r.CPURatio = round(r.ServerCPUMSPerOp*1e6/cpuRef, 3)
	}
	if n, ok := sm2Ops[r.Name]; ok && ref.SM2SignCPUNS > 0 && ref.SM2VerifyCPUNS > 0 {
		r.CryptoFloorMS = round((float64(n.verify)*ref.SM2VerifyCPUNS+float64(n.sign)*ref.SM2SignCPUNS)/1e6, 4)
	}
}

func round(v float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(v*p) / p
}
