package card

import "unicode/utf8"

// MaskSSN is THE display and log form of a social security number: the
// first four and last four characters with ten asterisks between
// (4113**********1234, DESIGN.md §5). Input of any other length is fully
// masked, so a malformed number never leaks either.
func MaskSSN(s string) string {
	if len(s) != 18 {
		return maskAll(s)
	}
	return s[:4] + "**********" + s[14:]
}

// MaskCardNumber shows the first and the last two characters of a card
// number (A1*****78); other lengths are fully masked.
func MaskCardNumber(s string) string {
	if len(s) != CardNumberLen {
		return maskAll(s)
	}
	return s[:2] + "*****" + s[7:]
}

// MaskName keeps the first character of a name (the surname in most
// Chinese names) and replaces the rest: 张三丰 → 张**.
func MaskName(s string) string {
	r, size := utf8.DecodeRuneInString(s)
	if size == 0 || r == utf8.RuneError {
		return maskAll(s)
	}
	n := utf8.RuneCountInString(s) - 1
	if n == 0 {
		return "*"
	}
	out := make([]byte, 0, size+n)
	out = append(out, s[:size]...)
	for i := 0; i < n; i++ {
		out = append(out, '*')
	}
	return string(out)
}

func maskAll(s string) string {
	n := utf8.RuneCountInString(s)
	if n > 32 {
		n = 32
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = '*'
	}
	return string(b)
}
