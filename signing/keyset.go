package signing

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// State is a key's place in the rotation lifecycle (DESIGN.md §4):
// pending (published, not yet signing) → active (signing) → retired
// (verification only) → removed (gone). States follow from an Entry's
// timestamps and the clock; nothing runs in the background.
type State int

// The lifecycle states.
const (
	StatePending State = iota + 1
	StateActive
	StateRetired
	StateRemoved
)

// String returns "pending", "active", "retired" or "removed".
func (s State) String() string {
	switch s {
	case StatePending:
		return "pending"
	case StateActive:
		return "active"
	case StateRetired:
		return "retired"
	case StateRemoved:
		return "removed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Entry is one key of a KeySet with its schedule. A zero RetireAt or RemoveAt
// means "not scheduled".
type Entry struct {
	Key        *Key
	PublishAt  time.Time // from here on in Publish (as pending until ActivateAt)
	ActivateAt time.Time // from here on used by Active
	RetireAt   time.Time // from here on verify only
	RemoveAt   time.Time // from here on unknown
}

// State returns the entry's state at now.
func (e Entry) State(now time.Time) State {
	switch {
	case !e.RemoveAt.IsZero() && !now.Before(e.RemoveAt):
		return StateRemoved
	case !e.RetireAt.IsZero() && !now.Before(e.RetireAt):
		return StateRetired
	case !now.Before(e.ActivateAt):
		return StateActive
	}
	return StatePending
}

func (e Entry) validate() error {
	if e.Key == nil {
		return fmt.Errorf("keyset: entry without key: %w", ErrInvalidKey)
	}
	if e.PublishAt.IsZero() || e.ActivateAt.IsZero() {
		return fmt.Errorf("keyset: %s: publish and activate times are required: %w", e.Key.id, ErrMalformed)
	}
	if e.ActivateAt.Before(e.PublishAt) ||
		(!e.RetireAt.IsZero() && e.RetireAt.Before(e.ActivateAt)) ||
		(!e.RemoveAt.IsZero() && (e.RetireAt.IsZero() || e.RemoveAt.Before(e.RetireAt))) {
		return fmt.Errorf("keyset: %s: times out of order: %w", e.Key.id, ErrMalformed)
	}
	return nil
}

// Policy sets the rotation periods.
type Policy struct {
	// PublishLead is how long a new key is published before it signs; it
	// must exceed the JWKS cache lifetime of relying parties.
	PublishLead time.Duration
	// RetiredFor is how long a retired key still verifies; it must exceed
	// the longest lifetime of a token signed with it.
	RetiredFor time.Duration
	// ActiveFor, when positive, makes Maintain start a rotation once the
	// active key will have signed for this long by the time its successor
	// activates. Zero disables automatic rotation.
	ActiveFor time.Duration
}

// DefaultPolicy publishes a key one day before use, rotates every 90 days and
// keeps a retired key for verification seven days.
func DefaultPolicy() Policy {
	return Policy{PublishLead: 24 * time.Hour, RetiredFor: 7 * 24 * time.Hour, ActiveFor: 90 * 24 * time.Hour}
}

// KeySetConfig configures a KeySet.
type KeySetConfig struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Policy is the rotation policy (default DefaultPolicy()).
	Policy Policy
	// Generate makes new keys for Rotate and EnsureActive (default
	// GenerateKey); an HSM backend plugs in here.
	Generate func(alg string) (*Key, error)
}

// KeySet holds the signing keys of all algorithms with their rotation
// schedules. Readers (Active, ResolveKey, Publish, Entries) are lock-free on
// an immutable snapshot; writers serialise on a mutex and swap the snapshot.
type KeySet struct {
	now      func() time.Time
	policy   Policy
	generate func(alg string) (*Key, error)

	mu   sync.Mutex // serialises writers
	snap atomic.Pointer[[]Entry]
}

var _ KeyResolver = (*KeySet)(nil)

// NewKeySet returns a KeySet holding entries (validated as by Add).
func NewKeySet(cfg KeySetConfig, entries ...Entry) (*KeySet, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Policy == (Policy{}) {
		cfg.Policy = DefaultPolicy()
	}
	if cfg.Policy.PublishLead < 0 || cfg.Policy.RetiredFor <= 0 || cfg.Policy.ActiveFor < 0 {
		return nil, fmt.Errorf("keyset: invalid policy %+v: %w", cfg.Policy, ErrMalformed)
	}
	if cfg.Generate == nil {
		cfg.Generate = GenerateKey
	}
	s := &KeySet{now: cfg.Now, policy: cfg.Policy, generate: cfg.Generate}
	s.snap.Store(&[]Entry{})
	for _, e := range entries {
		if err := s.Add(e); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *KeySet) entries() []Entry { return *s.snap.Load() }

// Entries returns a copy of all entries (including removed ones not yet
// pruned), ordered by algorithm then activation time.
func (s *KeySet) Entries() []Entry { return slices.Clone(s.entries()) }

// Add inserts an entry after checking its schedule and that its kid is new.
func (s *KeySet) Add(e Entry) error {
	if err := e.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.entries()
	for _, o := range cur {
		if o.Key.id == e.Key.id {
			return fmt.Errorf("keyset: duplicate kid %q: %w", e.Key.id, ErrMalformed)
		}
	}
	s.store(append(slices.Clone(cur), e))
	return nil
}

// Replace swaps all entries for entries (validated as by Add, kids unique)
// in one step; readers see either the old or the new set.
func (s *KeySet) Replace(entries []Entry) error {
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		if err := e.validate(); err != nil {
			return err
		}
		if seen[e.Key.id] {
			return fmt.Errorf("keyset: duplicate kid %q: %w", e.Key.id, ErrMalformed)
		}
		seen[e.Key.id] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.store(slices.Clone(entries))
	return nil
}

func (s *KeySet) store(es []Entry) {
	order := map[string]int{AlgSM2SM3: 0, AlgES256: 1, AlgRS256: 2}
	slices.SortStableFunc(es, func(a, b Entry) int {
		if c := order[a.Key.alg] - order[b.Key.alg]; c != 0 {
			return c
		}
		return a.ActivateAt.Compare(b.ActivateAt)
	})
	s.snap.Store(&es)
}

// activeIndex returns the index of the newest active signing entry of alg at now.
func activeIndex(es []Entry, alg string, now time.Time) int {
	best := -1
	for i, e := range es {
		if e.Key.alg == alg && e.Key.signer != nil && e.State(now) == StateActive &&
			(best < 0 || !e.ActivateAt.Before(es[best].ActivateAt)) {
			best = i
		}
	}
	return best
}

// Active returns the key that signs for alg now: the most recently activated
// entry in state active that holds a private half. ErrUnknownKey when none.
func (s *KeySet) Active(alg string) (*Key, error) {
	es := s.entries()
	if i := activeIndex(es, alg, s.now()); i >= 0 {
		return es[i].Key, nil
	}
	if !SupportedAlg(alg) {
		return nil, fmt.Errorf("keyset: %q: %w", alg, ErrUnsupportedAlg)
	}
	return nil, fmt.Errorf("keyset: no active %s key: %w", alg, ErrUnknownKey)
}

// ResolveKey implements KeyResolver: only active and retired keys verify;
// pending and removed keys are ErrUnknownKey, a kid of another algorithm is
// ErrAlgMismatch.
func (s *KeySet) ResolveKey(kid, alg string) (*Key, error) {
	now := s.now()
	for _, e := range s.entries() {
		if e.Key.id != kid {
			continue
		}
		if st := e.State(now); st != StateActive && st != StateRetired {
			return nil, fmt.Errorf("keyset: kid %q is %s: %w", kid, st, ErrUnknownKey)
		}
		if e.Key.alg != alg {
			return nil, fmt.Errorf("keyset: kid %q is %s, not %s: %w", kid, e.Key.alg, alg, ErrAlgMismatch)
		}
		return e.Key, nil
	}
	return nil, fmt.Errorf("keyset: kid %q: %w", kid, ErrUnknownKey)
}

// Publish returns the JWKS of the given algorithms (all when none given):
// pending, active and retired keys whose PublishAt has passed.
func (s *KeySet) Publish(algs ...string) JWKS {
	now := s.now()
	out := JWKS{Keys: []JWK{}}
	for _, e := range s.entries() {
		if len(algs) > 0 && !slices.Contains(algs, e.Key.alg) {
			continue
		}
		if now.Before(e.PublishAt) || e.State(now) == StateRemoved {
			continue
		}
		out.Keys = append(out.Keys, e.Key.PublicJWK())
	}
	return out
}

// Rotate advances alg's rotation at now and returns the key it added or promoted:
//   - no active key: a pending key (if any) is promoted, otherwise a new key is
//     generated and active at once (first start);
//   - a pending key exists: it becomes active now and the active key(s) retire now;
//   - otherwise a new key is added as pending, activating after PublishLead,
//     and the current active key(s) are scheduled to retire at that moment.
//
// Retired keys are scheduled for removal RetiredFor after retirement.
func (s *KeySet) Rotate(alg string, now time.Time) (*Key, error) {
	if !SupportedAlg(alg) {
		return nil, fmt.Errorf("keyset: rotate %q: %w", alg, ErrUnsupportedAlg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	es := slices.Clone(s.entries())
	pend := -1
	for i, e := range es {
		if e.Key.alg == alg && e.Key.signer != nil && e.State(now) == StatePending &&
			(pend < 0 || e.ActivateAt.Before(es[pend].ActivateAt)) {
			pend = i
		}
	}
	var (
		key      *Key
		switchAt time.Time
	)
	if pend >= 0 {
		es[pend].ActivateAt = now
		if es[pend].PublishAt.After(now) {
			es[pend].PublishAt = now
		}
		key, switchAt = es[pend].Key, now
	} else {
		k, err := s.generate(alg)
		if err != nil {
			return nil, err
		}
		if k.alg != alg || k.signer == nil {
			return nil, fmt.Errorf("keyset: generator returned a %s key (signer %t): %w", k.alg, k.signer != nil, ErrInvalidKey)
		}
		for _, e := range es {
			if e.Key.id == k.id {
				return nil, fmt.Errorf("keyset: generated duplicate kid %q: %w", k.id, ErrMalformed)
			}
		}
		switchAt = now.Add(s.policy.PublishLead)
		if activeIndex(es, alg, now) < 0 {
			switchAt = now
		}
		es = append(es, Entry{Key: k, PublishAt: now, ActivateAt: switchAt})
		key = k
	}
	for i, e := range es {
		if e.Key.alg != alg || e.Key == key || e.State(now) != StateActive {
			continue
		}
		if e.RetireAt.IsZero() || e.RetireAt.After(switchAt) {
			es[i].RetireAt = switchAt
			es[i].RemoveAt = switchAt.Add(s.policy.RetiredFor)
		}
	}
	s.store(es)
	return key, nil
}

// EnsureActive makes sure each alg (all of Algs() when none given) has an
// active signing key at now, calling Rotate for those without one. It
// returns the keys it created or promoted.
func (s *KeySet) EnsureActive(now time.Time, algs ...string) ([]*Key, error) {
	if len(algs) == 0 {
		algs = Algs()
	}
	var made []*Key
	for _, alg := range algs {
		if activeIndex(s.entries(), alg, now) >= 0 {
			continue
		}
		k, err := s.Rotate(alg, now)
		if err != nil {
			return made, err
		}
		made = append(made, k)
	}
	return made, nil
}

// Maintain applies the policy at now: for every algorithm that has an
// active key, when ActiveFor is set, no successor is pending, and the
// active key would reach ActiveFor by the end of a PublishLead, it
// starts a rotation (Rotate adds the pending successor); then it prunes
// removed entries. It reports whether anything changed. Call it from a
// ticker in the server; it is cheap when nothing is due.
func (s *KeySet) Maintain(now time.Time) (bool, error) {
	changed := false
	if every := s.policy.ActiveFor; every > 0 {
		for _, alg := range Algs() {
			es := s.entries()
			i := activeIndex(es, alg, now)
			if i < 0 || hasPending(es, alg, now) {
				continue
			}
			if now.Add(s.policy.PublishLead).Before(es[i].ActivateAt.Add(every)) {
				continue
			}
			if _, err := s.Rotate(alg, now); err != nil {
				return changed, err
			}
			changed = true
		}
	}
	if len(s.Prune(now)) > 0 {
		changed = true
	}
	return changed, nil
}

func hasPending(es []Entry, alg string, now time.Time) bool {
	for _, e := range es {
		if e.Key.alg == alg && e.Key.signer != nil && e.State(now) == StatePending {
			return true
		}
	}
	return false
}

// Prune drops the entries removed at now and returns them.
func (s *KeySet) Prune(now time.Time) []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep, gone []Entry
	for _, e := range s.entries() {
		if e.State(now) == StateRemoved {
			gone = append(gone, e)
		} else {
			keep = append(keep, e)
		}
	}
	if len(gone) > 0 {
		s.store(keep)
	}
	return gone
}
