package card

import (
	"crypto/hmac"
	"strings"

	"github.com/emmansun/gmsm/sm3"
)

// PIN policy constants (DESIGN.md §6).
const (
	// PINLen is the length of a social-security card PIN.
	PINLen = 6
	// InitialPIN is the PIN of a newly issued or outlet-reset card. It works
	// once, only to change it (MustChange).
	InitialPIN = "123456"
	// DefaultLockAfter is the number of consecutive failures that lock a PIN.
	DefaultLockAfter = 5
)

// PINVerifier computes the stored verifier HMAC-SM3(key, cardID ‖ pin). The
// PIN is always exactly six digits at the end, so the concatenation is
// unambiguous. Binding the card id means a verifier copied to another row
// does not verify there.
func PINVerifier(key []byte, cardID, pin string) []byte {
	m := hmac.New(sm3.New, key)
	m.Write([]byte(cardID))
	m.Write([]byte(pin))
	return m.Sum(nil)
}

// PINMatches compares pin with the stored verifier in constant time.
func PINMatches(key []byte, cardID, pin string, verifier []byte) bool {
	return hmac.Equal(PINVerifier(key, cardID, pin), verifier)
}

func isPINShape(pin string) bool {
	if len(pin) != PINLen {
		return false
	}
	for i := 0; i < len(pin); i++ {
		if pin[i] < '0' || pin[i] > '9' {
			return false
		}
	}
	return true
}

// CheckNewPIN applies the new-PIN policy for the holder with SSN ssn (the
// zero SSN skips the SSN-derived rules). It returns nil or an error wrapping
// ErrWeakPIN, checking in this order:
//   - ErrPINFormat: exactly six ASCII digits;
//   - ErrPINInitial: 123456;
//   - ErrPINRepeated: one digit six times (000000 … 999999);
//   - ErrPINSequence: an ascending or descending run without wrap-around
//     (012345 … 456789, 987654 … 543210);
//   - ErrPINBirthDate: with birth date YYYYMMDD: the PIN equals YYMMDD,
//     DDMMYY, MMDDYY or YYYYMM, or begins or ends with MMDD;
//   - ErrPINSSNSuffix: the last six characters of the SSN (only possible
//     when they are all digits).
func CheckNewPIN(pin string, ssn SSN) error {
	if !isPINShape(pin) {
		return ErrPINFormat
	}
	if pin == InitialPIN {
		return ErrPINInitial
	}
	if strings.Count(pin, pin[:1]) == PINLen {
		return ErrPINRepeated
	}
	if isRun(pin, 1) || isRun(pin, -1) {
		return ErrPINSequence
	}
	if ssn.IsZero() {
		return nil
	}
	b := ssn.Raw()[6:14] // YYYYMMDD
	yyyy, yy, mm, dd := b[:4], b[2:4], b[4:6], b[6:8]
	for _, frag := range []string{yy + mm + dd, dd + mm + yy, mm + dd + yy, yyyy + mm} {
		if pin == frag {
			return ErrPINBirthDate
		}
	}
	if strings.HasPrefix(pin, mm+dd) || strings.HasSuffix(pin, mm+dd) {
		return ErrPINBirthDate
	}
	if pin == ssn.Raw()[12:] {
		return ErrPINSSNSuffix
	}
	return nil
}

// isRun reports whether each digit of pin is the previous one plus step.
func isRun(pin string, step int) bool {
	for i := 1; i < len(pin); i++ {
		if int(pin[i])-int(pin[i-1]) != step {
			return false
		}
	}
	return true
}
