package card

import (
	"testing"
	"time"
)

// fixedNow is the clock of the pure tests: 2026-06-15 10:00 CST.
var fixedNow = time.Date(2026, 6, 15, 2, 0, 0, 0, time.UTC)

// makeSSN builds a valid SSN from a region, a YYYYMMDD birth date and a
// 3-digit sequence, computing the check character.
func makeSSN(region, birth, seq string) string {
	s := region + birth + seq
	return s + string(SSNCheckChar(s))
}

func mustSSN(t testing.TB, s string) SSN {
	t.Helper()
	v, err := ParseSSN(s, fixedNow)
	if err != nil {
		t.Fatalf("ParseSSN(%s): %v", MaskSSN(s), err)
	}
	return v
}
