package card

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestParseSSN(t *testing.T) {
	good := makeSSN("411302", "19850314", "123")
	// A published sample number with an X check character.
	withX := "11010519491231002X"
	lowerX := strings.ToLower(withX)
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"ok/computed", good, nil},
		{"ok/check-X", withX, nil},
		{"ok/lowercase-x", lowerX, nil},
		{"ok/surrounding-space", "  " + good + "\t", nil},
		{"ok/born-1900-01-01", makeSSN("110101", "19000101", "001"), nil},
		{"ok/born-today", makeSSN("110101", "20260615", "001"), nil},
		{"ok/leap-day", makeSSN("110101", "20000229", "001"), nil},
		{"ok/macao", makeSSN("820000", "19900101", "001"), nil},
		{"fail/empty", "", ErrSSNFormat},
		{"fail/short", good[:17], ErrSSNFormat},
		{"fail/long", good + "1", ErrSSNFormat},
		{"fail/letter-inside", "4113A2198503141234", ErrSSNFormat},
		{"fail/check-Y", good[:17] + "Y", ErrSSNFormat},
		{"fail/inner-space", good[:8] + " " + good[9:], ErrSSNFormat},
		{"fail/fullwidth", "４11302198503141234", ErrSSNFormat},
		{"fail/checksum", good[:17] + string(wrongCheck(good[17])), ErrSSNChecksum},
		{"fail/province-00", makeSSN("001302", "19850314", "123"), ErrSSNRegion},
		{"fail/province-99", makeSSN("991302", "19850314", "123"), ErrSSNRegion},
		{"fail/province-16", makeSSN("161302", "19850314", "123"), ErrSSNRegion},
		{"fail/region-shape", makeSSN("410012", "19850314", "123"), ErrSSNRegion},
		{"fail/feb-30", makeSSN("411302", "19850230", "123"), ErrSSNBirthDate},
		{"fail/feb-29-non-leap", makeSSN("411302", "19010229", "123"), ErrSSNBirthDate},
		{"fail/month-13", makeSSN("411302", "19851301", "123"), ErrSSNBirthDate},
		{"fail/day-00", makeSSN("411302", "19850100", "123"), ErrSSNBirthDate},
		{"fail/before-1900", makeSSN("411302", "18991231", "123"), ErrSSNBirthDate},
		{"fail/tomorrow", makeSSN("411302", "20260616", "123"), ErrSSNBirthDate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSSN(tt.in, fixedNow)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if len(got.Raw()) != 18 || got.Raw() != strings.ToUpper(strings.TrimSpace(tt.in)) {
					t.Fatalf("Raw() = %q", got.Raw())
				}
				return
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrInvalidSSN) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !got.IsZero() {
				t.Fatal("non-zero SSN returned with an error")
			}
		})
	}
}

func wrongCheck(c byte) byte {
	if c == '0' {
		return '1'
	}
	return '0'
}

func TestSSNNeverPrintsInFull(t *testing.T) {
	raw := makeSSN("411302", "19850314", "123")
	s := mustSSN(t, raw)
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "ssn", s)
	for _, out := range []string{s.String(), fmt.Sprint(s), fmt.Sprintf("%v %s", s, s), b.String()} {
		if strings.Contains(out, raw) || strings.Contains(out, raw[6:14]) {
			t.Fatalf("full SSN or birth date leaked: %q", out)
		}
	}
	if got, want := s.String(), raw[:4]+"**********"+raw[14:]; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

func TestSSNAge(t *testing.T) {
	tests := []struct {
		name  string
		birth string
		now   time.Time
		age   int
	}{
		{"ok/day-before-18th", "20080616", fixedNow, 17},
		{"ok/18th-birthday", "20080615", fixedNow, 18},
		// 2026-06-14 23:30 UTC is already 06-15 in China.
		{"ok/cst-date", "20080615", time.Date(2026, 6, 14, 23, 30, 0, 0, time.UTC), 18},
		{"ok/newborn", "20260615", fixedNow, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSSN(makeSSN("110101", tt.birth, "001"), tt.now)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.AgeAt(tt.now); got != tt.age {
				t.Fatalf("age = %d, want %d", got, tt.age)
			}
			if s.IsMinorAt(tt.now) != (tt.age < 18) {
				t.Fatal("IsMinorAt disagrees with AgeAt")
			}
		})
	}
}

func TestParseCardNumber(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"ok/digits", "123456789", "123456789", true},
		{"ok/letters", "A12345678", "A12345678", true},
		{"ok/lowercase-normalised", " a1234567z ", "A1234567Z", true},
		{"fail/empty", "", "", false},
		{"fail/8", "A1234567", "", false},
		{"fail/10", "A123456789", "", false},
		{"fail/punct", "A1234-678", "", false},
		{"fail/inner-space", "A123 5678", "", false},
		{"fail/fullwidth", "Ａ1234567", "", false},
		{"fail/non-ascii-letter", "É12345678", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCardNumber(tt.in)
			if tt.ok != (err == nil) || got != tt.want {
				t.Fatalf("ParseCardNumber(%q) = %q, %v", tt.in, got, err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidCardNumber) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestParseRegion(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"ok/county", "411302", true},
		{"ok/province", "410000", true},
		{"ok/city", "411300", true},
		{"ok/hk", "810000", true},
		{"ok/taiwan", "710000", true},
		{"fail/empty", "", false},
		{"fail/5", "41130", false},
		{"fail/7", "4113021", false},
		{"fail/letter", "41130A", false},
		{"fail/province-10", "101302", false},
		{"fail/province-66", "661302", false},
		{"fail/province-83", "831302", false},
		{"fail/county-without-city", "410012", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRegion(tt.in)
			if tt.ok != (err == nil) {
				t.Fatalf("ParseRegion(%q) = %v", tt.in, err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidRegion) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestMask(t *testing.T) {
	tests := []struct{ name, got, want string }{
		{"ok/ssn", MaskSSN("411302198503141234"), "4113**********1234"},
		{"ok/ssn-bad-length", MaskSSN("41130219850314"), "**************"},
		{"ok/card", MaskCardNumber("A12345678"), "A1*****78"},
		{"ok/card-bad-length", MaskCardNumber("A123"), "****"},
		{"ok/name", MaskName("张三丰"), "张**"},
		{"ok/name-one-rune", MaskName("张"), "*"},
		{"ok/name-empty", MaskName(""), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func FuzzParseSSN(f *testing.F) {
	for _, s := range []string{makeSSN("411302", "19850314", "123"), "11010519491231002X", "11010519491231002x", "", "x", "４11302198503141234", "41130219850230123X"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSSN(s, fixedNow)
		if err != nil {
			if !errors.Is(err, ErrInvalidSSN) || !v.IsZero() {
				t.Fatalf("bad error contract: %v", err)
			}
			return
		}
		raw := v.Raw()
		if len(raw) != 18 || SSNCheckChar(raw[:17]) != raw[17] {
			t.Fatalf("accepted invalid %q", raw)
		}
		if v.Birth().Before(minBirth) || v.Birth().After(fixedNow) {
			t.Fatalf("birth out of range: %v", v.Birth())
		}
		again, err := ParseSSN(raw, fixedNow)
		if err != nil || again.Raw() != raw {
			t.Fatalf("not idempotent: %v", err)
		}
		if strings.Contains(v.String(), raw[4:14]) {
			t.Fatal("mask leaks")
		}
	})
}

func FuzzParseCardNumber(f *testing.F) {
	for _, s := range []string{"A12345678", "a1234567z", " 123456789 ", "", "Ａ1234567", "A1234-678"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseCardNumber(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidCardNumber) || n != "" {
				t.Fatalf("bad error contract: %v", err)
			}
			return
		}
		if len(n) != CardNumberLen {
			t.Fatalf("len %d", len(n))
		}
		for _, c := range []byte(n) {
			if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') {
				t.Fatalf("accepted %q", n)
			}
		}
		if again, err := ParseCardNumber(n); err != nil || again != n {
			t.Fatal("not idempotent")
		}
	})
}

func BenchmarkParseSSN(b *testing.B) {
	s := makeSSN("411302", "19850314", "123")
	for b.Loop() {
		if _, err := ParseSSN(s, fixedNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPINVerifier(b *testing.B) {
	key := make([]byte, 32)
	for b.Loop() {
		PINVerifier(key, "0123456789abcdef0123456789abcdef", "730591")
	}
}
