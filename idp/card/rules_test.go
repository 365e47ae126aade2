package card

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/essc-project/essc/storage"
)

var (
	cardStates  = []storage.CardStatus{storage.CardActive, storage.CardLost, storage.CardReplaced, storage.CardCancelled}
	ecardStates = []storage.ECardStatus{storage.ECardActive, storage.ECardSuspended, storage.ECardRevoked}
)

// TestCardTransitions checks every (state, action) pair of the card machine:
// the allowed ones lead to the expected state, every other one is a
// *TransitionError.
func TestCardTransitions(t *testing.T) {
	A, L, R, C := storage.CardActive, storage.CardLost, storage.CardReplaced, storage.CardCancelled
	allowed := map[Action]map[storage.CardStatus]storage.CardStatus{
		ActionReportLoss: {A: L},
		ActionUnfreeze:   {L: A},
		ActionReplace:    {A: R, L: R},
		ActionCancel:     {A: C, L: C},
		ActionUnlockPIN:  {A: A, L: L},
		ActionResetPIN:   {A: A, L: L},
		ActionChangePIN:  {A: A},
		ActionVerifyPIN:  {A: A},
		ActionApplyECard: {A: A},
		ActionUseECard:   {}, // e-card action: never valid on the card machine
	}
	for a, m := range allowed {
		for _, from := range append(cardStates, "bogus") {
			want, ok := m[from]
			name := fmt.Sprintf("fail/%s-from-%s", a, from)
			if ok {
				name = fmt.Sprintf("ok/%s-from-%s", a, from)
			}
			t.Run(name, func(t *testing.T) {
				got, err := CardTransition(from, a)
				if ok {
					if err != nil || got != want {
						t.Fatalf("= %q, %v; want %q", got, err, want)
					}
					return
				}
				var te *TransitionError
				if !errors.Is(err, ErrForbiddenTransition) || !errors.As(err, &te) || te.Machine != "card" || te.Action != a {
					t.Fatalf("err = %v", err)
				}
			})
		}
	}
}

func TestECardTransitions(t *testing.T) {
	A, S, R := storage.ECardActive, storage.ECardSuspended, storage.ECardRevoked
	allowed := map[Action]map[storage.ECardStatus]storage.ECardStatus{
		ActionSuspendECard: {A: S},
		ActionResumeECard:  {S: A},
		ActionRevokeECard:  {A: R, S: R},
		ActionActivateBank: {A: A},
		ActionBindDevice:   {A: A},
		ActionUnbindDevice: {A: A, S: S},
		ActionUseECard:     {A: A},
		ActionReportLoss:   {},
	}
	for a, m := range allowed {
		for _, from := range append(ecardStates, "bogus") {
			want, ok := m[from]
			name := fmt.Sprintf("fail/%s-from-%s", a, from)
			if ok {
				name = fmt.Sprintf("ok/%s-from-%s", a, from)
			}
			t.Run(name, func(t *testing.T) {
				got, err := ECardTransition(from, a)
				if ok {
					if err != nil || got != want {
						t.Fatalf("= %q, %v; want %q", got, err, want)
					}
					return
				}
				var te *TransitionError
				if !errors.Is(err, ErrForbiddenTransition) || !errors.As(err, &te) || te.Machine != "ecard" {
					t.Fatalf("err = %v", err)
				}
			})
		}
	}
}

func TestCheckNewPIN(t *testing.T) {
	ssn := mustSSN(t, makeSSN("411302", "19850314", "123")) // last six 14123x
	digitsTail := mustSSN(t, findSSNWithDigitTail(t))
	tests := []struct {
		name string
		pin  string
		ssn  SSN
		want error
	}{
		{"ok/plain", "730591", ssn, nil},
		{"ok/no-ssn", "730591", SSN{}, nil},
		{"ok/almost-run", "123457", ssn, nil},
		{"ok/wraparound-not-a-run", "890123", ssn, nil},
		{"ok/birth-digits-elsewhere", "203141", ssn, nil},
		{"fail/5-digits", "73059", ssn, ErrPINFormat},
		{"fail/7-digits", "7305911", ssn, ErrPINFormat},
		{"fail/letter", "73059a", ssn, ErrPINFormat},
		{"fail/fullwidth", "７30591", ssn, ErrPINFormat},
		{"fail/initial", "123456", ssn, ErrPINInitial},
		{"fail/repeated-0", "000000", ssn, ErrPINRepeated},
		{"fail/repeated-8", "888888", SSN{}, ErrPINRepeated},
		{"fail/ascending-0", "012345", ssn, ErrPINSequence},
		{"fail/ascending-4", "456789", ssn, ErrPINSequence},
		{"fail/descending-9", "987654", ssn, ErrPINSequence},
		{"fail/descending-5", "543210", SSN{}, ErrPINSequence},
		{"fail/YYMMDD", "850314", ssn, ErrPINBirthDate},
		{"fail/DDMMYY", "140385", ssn, ErrPINBirthDate},
		{"fail/MMDDYY", "031485", ssn, ErrPINBirthDate},
		{"fail/YYYYMM", "198503", ssn, ErrPINBirthDate},
		{"fail/MMDD-prefix", "031499", ssn, ErrPINBirthDate},
		{"fail/MMDD-suffix", "770314", ssn, ErrPINBirthDate},
		{"fail/ssn-last-six", digitsTail.Raw()[12:], digitsTail, ErrPINSSNSuffix},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckNewPIN(tt.pin, tt.ssn)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrWeakPIN) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// findSSNWithDigitTail returns an SSN whose last six characters are digits
// and not otherwise a weak PIN (so only the SSN rule can fire).
func findSSNWithDigitTail(t *testing.T) string {
	for seq := 100; seq < 1000; seq++ {
		s := makeSSN("411302", "19850314", fmt.Sprint(seq))
		if s[17] == 'X' {
			continue
		}
		if err := CheckNewPIN(s[12:], SSN{}); err == nil && s[12:16] != "0314" {
			return s
		}
	}
	t.Fatal("no suitable SSN")
	return ""
}

func TestPINVerifier(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	v := PINVerifier(key, "card-1", "730591")
	tests := []struct {
		name        string
		key         []byte
		card, pin   string
		wantMatches bool
	}{
		{"ok/same", key, "card-1", "730591", true},
		{"fail/other-pin", key, "card-1", "730592", false},
		{"fail/other-card", key, "card-2", "730591", false},
		{"fail/other-key", []byte("another key"), "card-1", "730591", false},
		// card id / PIN boundary cannot be shifted: "card-17" + "30591" ≠ "card-1" + "730591" only because PIN is fixed-length.
		{"fail/empty-pin", key, "card-1", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PINMatches(tt.key, tt.card, tt.pin, v); got != tt.wantMatches {
				t.Fatalf("PINMatches = %v", got)
			}
		})
	}
	if len(v) != 32 {
		t.Fatalf("verifier length %d, want 32 (SM3)", len(v))
	}
}

func TestCheckDelegation(t *testing.T) {
	adult := mustSSN(t, makeSSN("411302", "19500101", "111"))
	adult2 := mustSSN(t, makeSSN("411302", "19800101", "222"))
	minor := mustSSN(t, makeSSN("411302", "20150701", "333"))
	tests := []struct {
		name      string
		req       DelegationRequest
		want      error
		wantUntil time.Time
		wantBank  bool
	}{
		{"ok/guardian-minor", DelegationRequest{Principal: minor, Agent: adult2, Kind: storage.DelegationGuardian},
			nil, time.Date(2033, 7, 1, 0, 0, 0, 0, time.UTC), true},
		{"ok/guardian-no-capacity", DelegationRequest{Principal: adult, Agent: adult2, Kind: storage.DelegationGuardian, LacksCapacity: true, Evidence: "court-2026-17"},
			nil, time.Time{}, true},
		{"ok/agent-elderly", DelegationRequest{Principal: adult, Agent: adult2, Kind: storage.DelegationAgent, Evidence: "auth-42"},
			nil, time.Time{}, false},
		{"ok/agent-scoped", DelegationRequest{Principal: adult, Agent: adult2, Kind: storage.DelegationAgent, Evidence: "auth-42", Scopes: []Action{ActionUseECard}},
			nil, time.Time{}, false},
		{"fail/guardian-adult-with-capacity", DelegationRequest{Principal: adult, Agent: adult2, Kind: storage.DelegationGuardian}, ErrDelegationRule, time.Time{}, false},
		{"fail/guardian-no-capacity-without-evidence", DelegationRequest{Principal: adult, Agent: adult2, Kind: storage.DelegationGuardian, LacksCapacity: true}, ErrDelegationRule, time.Time{}, false},
		{"fail/agent-bank", DelegationRequest{Principal: adult, Agent: adult2, Kind: storage.DelegationAgent, Evidence: "a", Scopes: []Action{ActionActivateBank}}, ErrDelegationRule, time.Time{}, false},
		{"fail/agent-for-minor", DelegationRequest{Principal: minor, Agent: adult2, Kind: storage.DelegationAgent, Evidence: "a"}, ErrDelegationRule, time.Time{}, false},
		{"fail/agent-without-authorisation", DelegationRequest{Principal: adult, Agent: adult2, Kind: storage.DelegationAgent}, ErrDelegationRule, time.Time{}, false},
		{"fail/minor-agent", DelegationRequest{Principal: adult, Agent: minor, Kind: storage.DelegationAgent, Evidence: "a"}, ErrDelegationRule, time.Time{}, false},
		{"fail/self", DelegationRequest{Principal: adult, Agent: adult, Kind: storage.DelegationAgent, Evidence: "a"}, ErrDelegationRule, time.Time{}, false},
		{"fail/unknown-kind", DelegationRequest{Principal: adult, Agent: adult2, Kind: "friend", Evidence: "a"}, ErrDelegationRule, time.Time{}, false},
		{"fail/unknown-scope", DelegationRequest{Principal: adult, Agent: adult2, Kind: storage.DelegationAgent, Evidence: "a", Scopes: []Action{ActionCancel}}, ErrDelegationRule, time.Time{}, false},
		{"fail/already-ended", DelegationRequest{Principal: adult, Agent: adult2, Kind: storage.DelegationAgent, Evidence: "a", ValidUntil: fixedNow.Add(-time.Hour)}, ErrDelegationRule, time.Time{}, false},
		{"fail/missing-agent", DelegationRequest{Principal: adult, Kind: storage.DelegationAgent, Evidence: "a"}, ErrDelegationRule, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scopes, until, err := CheckDelegation(tt.req, fixedNow)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !until.Equal(tt.wantUntil) {
				t.Fatalf("until = %v, want %v", until, tt.wantUntil)
			}
			hasBank := false
			for _, s := range scopes {
				hasBank = hasBank || s == ActionActivateBank
			}
			if hasBank != tt.wantBank || len(scopes) == 0 {
				t.Fatalf("scopes = %v", scopes)
			}
		})
	}
}

func TestPermits(t *testing.T) {
	base := storage.Delegation{Kind: storage.DelegationAgent, Scopes: []string{string(ActionUseECard), string(ActionActivateBank)},
		ValidFrom: fixedNow.Add(-time.Hour), ValidUntil: fixedNow.Add(time.Hour)}
	mod := func(f func(*storage.Delegation)) storage.Delegation { d := base; f(&d); return d }
	tests := []struct {
		name string
		d    storage.Delegation
		a    Action
		ok   bool
	}{
		{"ok/in-scope", base, ActionUseECard, true},
		{"ok/open-ended", mod(func(d *storage.Delegation) { d.ValidUntil = time.Time{} }), ActionUseECard, true},
		{"ok/guardian-bank", mod(func(d *storage.Delegation) { d.Kind = storage.DelegationGuardian }), ActionActivateBank, true},
		{"fail/agent-bank-even-if-stored", base, ActionActivateBank, false},
		{"fail/out-of-scope", base, ActionChangePIN, false},
		{"fail/revoked", mod(func(d *storage.Delegation) { d.RevokedAt = fixedNow.Add(-time.Minute) }), ActionUseECard, false},
		{"fail/expired-exactly", mod(func(d *storage.Delegation) { d.ValidUntil = fixedNow }), ActionUseECard, false},
		{"fail/not-yet", mod(func(d *storage.Delegation) { d.ValidFrom = fixedNow.Add(time.Minute) }), ActionUseECard, false},
		{"fail/unknown-kind", mod(func(d *storage.Delegation) { d.Kind = "x" }), ActionUseECard, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Permits(tt.d, tt.a, fixedNow)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrNotDelegated)) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}
