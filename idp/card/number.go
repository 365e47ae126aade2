package card

import "strings"

// CardNumberLen is the length of a physical card number.
const CardNumberLen = 9

// ParseCardNumber validates a physical card number and returns its canonical
// form. The rule (documented in docs/PROTOCOL.md by the lead): exactly nine
// characters, each an ASCII digit or an upper-case ASCII letter A–Z.
// Surrounding white space is trimmed and ASCII letters are upper-cased (an
// operator typing a123b5678 means A123B5678); anything else — inner spaces,
// punctuation, full-width or other non-ASCII characters — is rejected with
// ErrInvalidCardNumber. No check digit is assumed: card issuers' number
// series differ by region and the registry's unique index is the authority.
func ParseCardNumber(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) != CardNumberLen {
		return "", ErrInvalidCardNumber
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9', c >= 'A' && c <= 'Z':
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		default:
			return "", ErrInvalidCardNumber
		}
	}
	return string(b), nil
}

// provinces are the province-level division codes (GB/T 2260) that may
// start a region code: 11–15, 21–23, 31–37, 41–46, 50–54, 61–65, and 71
// (Taiwan), 81 (Hong Kong), 82 (Macao).
var provinces = map[string]bool{
	"11": true, "12": true, "13": true, "14": true, "15": true,
	"21": true, "22": true, "23": true,
	"31": true, "32": true, "33": true, "34": true, "35": true, "36": true, "37": true,
	"41": true, "42": true, "43": true, "44": true, "45": true, "46": true,
	"50": true, "51": true, "52": true, "53": true, "54": true,
	"61": true, "62": true, "63": true, "64": true, "65": true,
	"71": true, "81": true, "82": true,
}

// ParseRegion validates a six-digit administrative division code (the
// issuing region of a card, the prefix of an SSN): six ASCII digits whose
// first two are a known province code. The city and county pairs are not
// checked against a table (divisions change every year, and old SSNs keep
// abolished codes); the shape rule is that a county part other than 00
// needs a city part other than 00 (12 00 05 is not a division).
// Surrounding white space is trimmed.
func ParseRegion(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) != 6 {
		return "", ErrInvalidRegion
	}
	for i := 0; i < 6; i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", ErrInvalidRegion
		}
	}
	if !provinces[s[:2]] {
		return "", ErrInvalidRegion
	}
	if s[2:4] == "00" && s[4:6] != "00" {
		return "", ErrInvalidRegion
	}
	return s, nil
}
