package card

import (
	"log/slog"
	"strings"
	"time"
)

// SSN is a validated 18-character social security number (公民身份号码,
// GB 11643-1999). The zero value is invalid. Its String and LogValue are
// MASKED (4113**********1234) so an SSN that reaches a log line or an error
// message never leaks; use Raw for the storage layer and the essc.ssn claim.
type SSN struct {
	raw   string
	birth time.Time
}

// ssnWeights are the GB 11643 / ISO 7064 MOD 11-2 weights 2^(17-i) mod 11.
var ssnWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

// ssnCheck maps (weighted sum mod 11) to the check character.
const ssnCheck = "10X98765432"

// ParseSSN validates s at the instant now and returns the SSN. Surrounding
// white space is trimmed and a lower-case x check character is upper-cased;
// nothing else is normalised. Rules, in order (the first failure is
// returned, each error wraps ErrInvalidSSN):
//   - shape: 17 ASCII digits then a digit or X (ErrSSNFormat);
//   - region: the first six digits form a division code with a known
//     province (ErrSSNRegion, see ParseRegion);
//   - birth date: digits 7–14 are a real YYYYMMDD date, not before
//     1900-01-01 and not after now's date in China Standard Time
//     (ErrSSNBirthDate);
//   - check character: ISO 7064 MOD 11-2 (ErrSSNChecksum).
func ParseSSN(s string, now time.Time) (SSN, error) {
	s = strings.TrimSpace(s)
	if len(s) != 18 {
		return SSN{}, ErrSSNFormat
	}
	if s[17] == 'x' {
		s = s[:17] + "X"
	}
	sum := 0
	for i := 0; i < 17; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return SSN{}, ErrSSNFormat
		}
		sum += int(c-'0') * ssnWeights[i]
	}
	if c := s[17]; (c < '0' || c > '9') && c != 'X' {
		return SSN{}, ErrSSNFormat
	}
	if _, err := ParseRegion(s[:6]); err != nil {
		return SSN{}, ErrSSNRegion
	}
	birth, ok := parseDate(s[6:14])
	if !ok || birth.Before(minBirth) || birth.After(dateIn(now)) {
		return SSN{}, ErrSSNBirthDate
	}
	if ssnCheck[sum%11] != s[17] {
		return SSN{}, ErrSSNChecksum
	}
	return SSN{raw: s, birth: birth}, nil
}

// SSNCheckChar returns the check character for the first 17 digits of an
// SSN (used by tests and by synthetic data generators). It panics if
// first17 is not 17 ASCII digits.
func SSNCheckChar(first17 string) byte {
	if len(first17) != 17 {
		panic("card: SSNCheckChar needs 17 digits")
	}
	sum := 0
	for i := 0; i < 17; i++ {
		c := first17[i]
		if c < '0' || c > '9' {
			panic("card: SSNCheckChar needs 17 digits")
		}
		sum += int(c-'0') * ssnWeights[i]
	}
	return ssnCheck[sum%11]
}

var (
	// china is UTC+8 without DST: birth dates and ages are counted in
	// China Standard Time whatever the server's zone.
	china    = time.FixedZone("CST", 8*3600)
	minBirth = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
)

// parseDate reads YYYYMMDD as a UTC midnight; ok is false unless the date
// exists (no 0230, no 1301).
func parseDate(s string) (time.Time, bool) {
	if len(s) != 8 {
		return time.Time{}, false
	}
	n := [3]int{}
	for i, w := range [][2]int{{0, 4}, {4, 6}, {6, 8}} {
		for _, c := range []byte(s[w[0]:w[1]]) {
			if c < '0' || c > '9' {
				return time.Time{}, false
			}
			n[i] = n[i]*10 + int(c-'0')
		}
	}
	t := time.Date(n[0], time.Month(n[1]), n[2], 0, 0, 0, 0, time.UTC)
	if t.Year() != n[0] || int(t.Month()) != n[1] || t.Day() != n[2] {
		return time.Time{}, false
	}
	return t, true
}

// dateIn returns the calendar date of t in China Standard Time as UTC midnight.
func dateIn(t time.Time) time.Time {
	y, m, d := t.In(china).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Raw returns the full 18-character number. Only the storage layer, the
// duplicate check and the essc.ssn claim may use it.
func (s SSN) Raw() string { return s.raw }

// IsZero reports whether s is the zero (invalid) value.
func (s SSN) IsZero() bool { return s.raw == "" }

// Birth returns the birth date (UTC midnight).
func (s SSN) Birth() time.Time { return s.birth }

// Region returns the six-digit division code of the place of registration.
func (s SSN) Region() string {
	if len(s.raw) < 6 {
		return ""
	}
	return s.raw[:6]
}

// AgeAt returns the holder's age in whole years at now (China Standard Time).
func (s SSN) AgeAt(now time.Time) int {
	return ageAt(s.birth, now)
}

func ageAt(birth, now time.Time) int {
	today := dateIn(now)
	age := today.Year() - birth.Year()
	if today.Month() < birth.Month() || (today.Month() == birth.Month() && today.Day() < birth.Day()) {
		age--
	}
	return age
}

// IsMinorAt reports whether the holder is under 18 at now.
func (s SSN) IsMinorAt(now time.Time) bool { return s.AgeAt(now) < 18 }

// AdultOn returns the date the holder turns 18 (UTC midnight); a 29 February
// birthday becomes of age on 1 March in non-leap years.
func (s SSN) AdultOn() time.Time {
	return s.birth.AddDate(18, 0, 0)
}

// String returns the masked form; it never returns the full number.
func (s SSN) String() string { return MaskSSN(s.raw) }

// LogValue implements slog.LogValuer with the masked form.
func (s SSN) LogValue() slog.Value { return slog.StringValue(MaskSSN(s.raw)) }

var _ slog.LogValuer = SSN{}
