package memory

import "time"

// Which of the Store's maps an expiry reference points into.
const (
	inItems uint8 = iota
	inExpiring
	inQR
	inSSO
	inSubj
)

// expiryRef names one entry: its map, its key and, for the subject index,
// the request id under the subject.
type expiryRef struct {
	in  uint8
	key string
	sub string
}

// expiries files every entry under the second it expires in, so a sweep
// visits what is due instead of the whole store: with a day of hour-long
// tokens held in memory a full scan cost every 1,024th write tens of
// milliseconds under the store's lock.
//
// A reference is filed each time an entry is written with a new expiry. When
// its second comes the sweep looks the entry up again and drops it only if
// it has expired by then: an entry deleted, replaced or given a later expiry
// meanwhile is left alone (a later expiry was filed under its own second).
type expiries struct {
	due  map[int64][]expiryRef
	next int64 // the first second not yet swept
}

func newExpiries(now time.Time) expiries {
	return expiries{due: map[int64][]expiryRef{}, next: now.Unix()}
}

// file records that the entry r expires at exp. Entries already due are
// filed under the next second to sweep.
func (e *expiries) file(exp time.Time, r expiryRef) {
	sec := max(exp.Unix(), e.next)
	e.due[sec] = append(e.due[sec], r)
}

// sweep hands drop the references filed under the seconds before now's (an
// entry filed there expires before now), at most budget of them, so one
// write never carries a whole second's expiries of a busy server; the rest
// wait for the next call.
func (e *expiries) sweep(now time.Time, budget int, drop func(expiryRef)) {
	end := now.Unix()
	if end-e.next > int64(len(e.due)) { // a long quiet spell or a clock jump:
		lo := end // skip the empty seconds by the filed ones
		for sec := range e.due {
			lo = min(lo, sec)
		}
		e.next = lo
	}
	for e.next < end && budget > 0 {
		refs := e.due[e.next]
		n := min(len(refs), budget)
		for _, r := range refs[:n] {
			drop(r)
		}
		budget -= n
		if n < len(refs) {
			e.due[e.next] = refs[n:]
			return
		}
		delete(e.due, e.next)
		e.next++
	}
}
