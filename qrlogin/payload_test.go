package qrlogin

import (
	"errors"
	"strings"
	"testing"
)

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
