package qrlogin

import (
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/emmansun/gmsm/sm3"
)

// Scheme and host of a QR-Link v1 payload: essc://login?v=1&t=…&e=…&c=….
const (
	payloadPrefix = "essc://login?"
	// MaxPayloadLen bounds what ParsePayload reads (a real payload is ~100 bytes).
	MaxPayloadLen = 512
	txnIDLen      = 22 // 128 bits, base64url without padding
	macLen        = 16 // truncated HMAC-SM3, 128 bits
)

// ErrBadPayload is returned (wrapped) for anything that is not a well-formed
// QR-Link v1 payload. It says nothing about whether the transaction exists.
var ErrBadPayload = errors.New("qrlogin: malformed QR payload")

// Frame is one animated QR frame: the transaction, the frame number (seconds
// since the transaction started, in steps of the frame interval) and a MAC
// that binds both to the relying party.
type Frame struct {
	Txn     string
	Elapsed int // seconds since the transaction was created
	MAC     []byte
}

// String renders the payload encoded in the QR image.
func (f Frame) String() string {
	b := make([]byte, 0, len(payloadPrefix)+len(f.Txn)+40)
	b = append(b, payloadPrefix...)
	b = append(b, "v=1&t="...)
	b = append(b, f.Txn...)
	b = append(b, "&e="...)
	b = strconv.AppendInt(b, int64(f.Elapsed), 10)
	b = append(b, "&c="...)
	b = base64.RawURLEncoding.AppendEncode(b, f.MAC)
	return string(b)
}

// frameMAC is HMAC-SM3(frame key, "essc-qr-v1" 0x00 txn 0x00 e 0x00 client),
// truncated to 128 bits. The client id is not in the payload: a frame copied
// from one relying party's page cannot be replayed into another's
// transaction.
func frameMAC(key []byte, txn string, elapsed int, clientID string) []byte {
	var buf [128]byte
	msg := append(buf[:0], "essc-qr-v1\x00"...)
	msg = append(msg, txn...)
	msg = append(msg, 0)
	msg = strconv.AppendInt(msg, int64(elapsed), 10)
	msg = append(msg, 0)
	msg = append(msg, clientID...)
	m := hmac.New(sm3.New, key)
	m.Write(msg)
	return m.Sum(make([]byte, 0, sm3.Size))[:macLen]
}

// ParsePayload parses a scanned payload strictly: the exact scheme, exactly
// the parameters v, t, e, c once each, v=1, a 22-character base64url
// transaction id, a non-negative decimal frame number without leading zeros
// and a 128-bit MAC. It does not check the MAC (that needs the transaction).
func ParsePayload(s string) (Frame, error) {
	if len(s) > MaxPayloadLen {
		return Frame{}, fmt.Errorf("%w: too long", ErrBadPayload)
	}
	q, ok := strings.CutPrefix(s, payloadPrefix)
	if !ok {
		return Frame{}, fmt.Errorf("%w: not an essc://login link", ErrBadPayload)
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		return Frame{}, fmt.Errorf("%w: query", ErrBadPayload)
	}
	if len(vals) != 4 {
		return Frame{}, fmt.Errorf("%w: want exactly v, t, e, c", ErrBadPayload)
	}
	get := func(k string) (string, error) {
		v := vals[k]
		if len(v) != 1 {
			return "", fmt.Errorf("%w: parameter %s missing or repeated", ErrBadPayload, k)
		}
		return v[0], nil
	}
	var f Frame
	v, err := get("v")
	if err != nil {
		return Frame{}, err
	}
	if v != "1" {
		return Frame{}, fmt.Errorf("%w: unsupported version", ErrBadPayload)
	}
	if f.Txn, err = get("t"); err != nil {
		return Frame{}, err
	}
	if !validTxnID(f.Txn) {
		return Frame{}, fmt.Errorf("%w: transaction id", ErrBadPayload)
	}
	e, err := get("e")
	if err != nil {
		return Frame{}, err
	}
	if e == "" || len(e) > 6 || (len(e) > 1 && e[0] == '0') {
		return Frame{}, fmt.Errorf("%w: frame number", ErrBadPayload)
	}
	for _, r := range e {
		if r < '0' || r > '9' {
			return Frame{}, fmt.Errorf("%w: frame number", ErrBadPayload)
		}
	}
	f.Elapsed, _ = strconv.Atoi(e)
	c, err := get("c")
	if err != nil {
		return Frame{}, err
	}
	if f.MAC, err = base64.RawURLEncoding.Strict().DecodeString(c); err != nil || len(f.MAC) != macLen {
		return Frame{}, fmt.Errorf("%w: frame MAC", ErrBadPayload)
	}
	return f, nil
}

// validTxnID reports whether s is 22 characters of the base64url alphabet
// that decode to exactly 16 octets.
func validTxnID(s string) bool {
	if len(s) != txnIDLen {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == 16
}
