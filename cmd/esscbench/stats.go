package main

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of the
// sorted durations: the smallest value such that at least p % of the values
// are ≤ it. It returns 0 for an empty slice. sorted must be ascending.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 || p <= 0 {
		return 0
	}
	if p >= 100 {
		return sorted[len(sorted)-1]
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

// StepStats summarises one step's latencies, in milliseconds.
type StepStats struct {
	Name  string  `json:"name"`
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Summarise sorts ds in place and returns its statistics.
func Summarise(name string, ds []time.Duration) StepStats {
	slices.Sort(ds)
	return StepStats{Name: name, Count: len(ds), P50: ms(Percentile(ds, 50)), P90: ms(Percentile(ds, 90)),
		P99: ms(Percentile(ds, 99)), Max: ms(Percentile(ds, 100))}
}

// recorder collects one worker's step latencies and error kinds; it is not
// shared between goroutines (the runner merges recorders at the end).
type recorder struct {
	steps  map[string][]time.Duration
	order  []string
	errors map[string]int
	ops    int
}

func newRecorder() *recorder {
	return &recorder{steps: map[string][]time.Duration{}, errors: map[string]int{}}
}

// step times f under name and returns its error; a failed step's latency is
// not recorded (it would mix fast refusals into the percentiles).
func (r *recorder) step(name string, f func() error) error {
	t0 := time.Now()
	err := f()
	if err != nil {
		return err
	}
	r.add(name, time.Since(t0))
	return nil
}

func (r *recorder) add(name string, d time.Duration) {
	if _, ok := r.steps[name]; !ok {
		r.order = append(r.order, name)
	}
	r.steps[name] = append(r.steps[name], d)
}

// merge folds o into r (step order: first seen first).
func (r *recorder) merge(o *recorder) {
	for _, n := range o.order {
		if _, ok := r.steps[n]; !ok {
			r.order = append(r.order, n)
		}
		r.steps[n] = append(r.steps[n], o.steps[n]...)
	}
	for k, v := range o.errors {
		r.errors[k] += v
	}
	r.ops += o.ops
}
