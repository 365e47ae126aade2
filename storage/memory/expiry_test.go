package memory

import (
	"fmt"
	"testing"
	"time"
)

// FuzzExpiries drives the expiry index with filings, clock moves (forward,
// back, a year's jump) and budgeted sweeps, against a model: a sweep hands
// over only references whose expiry has passed, at most budget of them, each
// once; a final sweep past every clock reading and expiry seen hands over all
// the rest.
func FuzzExpiries(f *testing.F) {
	f.Add([]byte{0, 5, 0, 9, 1, 3, 2, 1, 2, 8, 3, 1, 0, 2, 1, 255, 2, 3})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 2, 1, 1, 1, 2, 1, 2, 1, 2, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		start := time.Unix(1_800_000_000, 0)
		now, latest := start, start
		e := newExpiries(now)
		exps := map[string]time.Time{}
		handed := map[string]bool{}
		sweep := func(budget int) int {
			n := 0
			e.sweep(now, budget, func(r expiryRef) {
				n++
				exp, ok := exps[r.key]
				switch {
				case !ok:
					t.Fatalf("handed %q, never filed", r.key)
				case handed[r.key]:
					t.Fatalf("handed %q twice", r.key)
				case now.Before(exp):
					t.Fatalf("handed %q at %v, before its expiry %v", r.key, now, exp)
				}
				handed[r.key] = true
			})
			if n > budget {
				t.Fatalf("sweep handed %d over a budget of %d", n, budget)
			}
			return n
		}
		for i := 0; i+1 < len(ops); i += 2 {
			a := int(ops[i+1])
			switch ops[i] % 4 {
			case 0: // file an entry expiring between 4 s ago and 11 s ahead
				k := fmt.Sprint("k", len(exps))
				exps[k] = now.Add(time.Duration(a%16-4)*time.Second + time.Duration(a>>4)*60*time.Millisecond)
				e.file(exps[k], expiryRef{in: inExpiring, key: k})
				if exps[k].After(latest) {
					latest = exps[k]
				}
			case 1: // the clock moves on
				if a == 255 {
					now = now.Add(365 * 24 * time.Hour)
				} else {
					now = now.Add(time.Duration(a%8)*time.Second + time.Duration(a>>3)*37*time.Millisecond)
				}
			case 2:
				sweep(a%8 + 1)
			case 3: // the clock steps back
				now = now.Add(-time.Duration(a%3) * time.Second)
			}
			if now.After(latest) {
				latest = now
			}
		}
		now = latest.Add(2 * time.Second)
		for sweep(8) > 0 {
		}
		for k := range exps {
			if !handed[k] {
				t.Fatalf("%q (expiry %v) never handed over by %v", k, exps[k], now)
			}
		}
	})
}
