package qrlogin

import (
	"bytes"
	"crypto/hmac"
	"errors"
	"strings"
	"testing"

	qrcode "github.com/skip2/go-qrcode"
	tjsm3 "github.com/tjfoc/gmsm/sm3"
)

// TestQRVersion pins the symbol size the error-correction choice relies on:
// the longest frame a transaction shows (frame number ≤ TTL) is version 5.
func TestQRVersion(t *testing.T) {
	f := Frame{Txn: "AAAAAAAAAAAAAAAAAAAAAA", Elapsed: 120 + 60, MAC: make([]byte, macLen)}
	q, err := qrcode.New(f.String(), qrLevel)
	if err != nil {
		t.Fatal(err)
	}
	if q.VersionNumber > 5 {
		t.Fatalf("payload %q needs version %d", f.String(), q.VersionNumber)
	}
}

// TestFrameMACIndependent checks frameMAC against HMAC over another SM3
// implementation, over the documented message layout (docs/PROTOCOL.md):
// a change of layout or hash breaks frames across a rolling deployment.
func TestFrameMACIndependent(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	for _, c := range []struct {
		txn     string
		elapsed int
		client  string
	}{{"AAAAAAAAAAAAAAAAAAAAAA", 0, "portal"}, {"q83vEjRWeJCrze8SNFZ4kA", 115, "客户端-1"}} {
		m := hmac.New(tjsm3.New, key)
		m.Write([]byte("essc-qr-v1\x00" + c.txn + "\x00" + itoa(c.elapsed) + "\x00" + c.client))
		want := m.Sum(nil)[:16]
		if got := frameMAC(key, c.txn, c.elapsed, c.client); !bytes.Equal(got, want) {
			t.Errorf("%+v: %x, want %x", c, got, want)
		}
	}
	if bytes.Equal(frameMAC(key, "AAAAAAAAAAAAAAAAAAAAAA", 1, "a"), frameMAC(key, "AAAAAAAAAAAAAAAAAAAAAA", 1, "b")) {
		t.Error("fail/client id not bound")
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestParsePayload(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	good := Frame{Txn: "AAAAAAAAAAAAAAAAAAAAAA", Elapsed: 7, MAC: frameMAC(key, "AAAAAAAAAAAAAAAAAAAAAA", 7, "portal")}.String()
	f, err := ParsePayload(good)
	if err != nil || f.Elapsed != 7 || f.String() != good {
		t.Fatalf("ok/round-trip: %+v %v", f, err)
	}
	bad := map[string]string{
		"fail/empty":        "",
		"fail/scheme":       strings.Replace(good, "essc://", "https://", 1),
		"fail/version":      strings.Replace(good, "v=1", "v=2", 1),
		"fail/duplicate":    good + "&e=8",
		"fail/extra":        good + "&x=1",
		"fail/missing-mac":  good[:strings.Index(good, "&c=")],
		"fail/short-txn":    strings.Replace(good, "t=AAAAAAAAAAAAAAAAAAAAAA", "t=AAAA", 1),
		"fail/txn-alphabet": strings.Replace(good, "t=AAAAAAAAAAAAAAAAAAAAAA", "t=AAAAAAAAAAAAAAAAAAAA+/", 1),
		"fail/leading-zero": strings.Replace(good, "e=7", "e=07", 1),
		"fail/negative":     strings.Replace(good, "e=7", "e=-7", 1),
		"fail/huge-frame":   strings.Replace(good, "e=7", "e=99999999", 1),
		"fail/mac-length":   good[:len(good)-2],
		"fail/too-long":     good + strings.Repeat("x", MaxPayloadLen),
		"fail/bad-escape":   good + "%zz",
	}
	for name, in := range bad {
		if _, err := ParsePayload(in); !errors.Is(err, ErrBadPayload) {
			t.Errorf("%s: %q accepted or wrong error: %v", name, in, err)
		}
	}
}

func FuzzParsePayload(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	f.Add(Frame{Txn: "AAAAAAAAAAAAAAAAAAAAAA", Elapsed: 3, MAC: frameMAC(key, "AAAAAAAAAAAAAAAAAAAAAA", 3, "c")}.String())
	f.Add("essc://login?v=1&t=x&e=0&c=y")
	f.Add("essc://login?")
	f.Fuzz(func(t *testing.T, s string) {
		fr, err := ParsePayload(s)
		if err != nil {
			if !errors.Is(err, ErrBadPayload) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again, err := ParsePayload(fr.String())
		if err != nil || again.Txn != fr.Txn || again.Elapsed != fr.Elapsed || string(again.MAC) != string(fr.MAC) {
			t.Fatalf("accepted payload does not round-trip: %q", s)
		}
	})
}
