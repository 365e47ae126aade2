package storage_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"golang.org/x/text/language"

	"github.com/essc-project/essc/storage"
)

func testCodec() *storage.RequestCodec {
	return storage.NewRequestCodec(
		func(_ context.Context, id string) (fosite.Client, error) {
			if id == "down" {
				return nil, storage.ErrUnavailable
			}
			return &fosite.DefaultClient{ID: id}, nil
		},
		func() fosite.Session { return openid.NewDefaultSession() })
}

func sample() *fosite.Request {
	s := openid.NewDefaultSession()
	s.Subject = "sub-1"
	s.Claims.Extra = map[string]any{"big": int64(9007199254740993)} // 2^53+1: not representable as float64
	return &fosite.Request{ID: "r1", RequestedAt: time.Unix(1700000000, 0).UTC(), Client: &fosite.DefaultClient{ID: "portal"},
		RequestedScope: fosite.Arguments{"openid"}, GrantedScope: fosite.Arguments{"openid"},
		Form: url.Values{"nonce": {"n"}}, Session: s, Lang: language.Chinese}
}

func TestCodec(t *testing.T) {
	c := testCodec()
	enc, err := c.Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr error
	}{
		{"ok/compressed", enc, nil},
		{"ok/plain-json", []byte(`{"id":"r2","cid":"portal","sess":{"subject":"x"}}`), nil},
		{"fail/empty", nil, nil},
		{"fail/garbage", []byte("not json"), nil},
		{"fail/truncated-deflate", enc[:len(enc)/2], nil},
		{"fail/deflate-garbage", []byte("z\x00\xff\xff\x00"), nil},
		{"fail/bad-redirect", []byte(`{"id":"r","cid":"portal","az":{"ru":"::bad"}}`), nil},
		{"fail/client-unavailable", []byte(`{"id":"r","cid":"down"}`), storage.ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := c.Decode(context.Background(), tc.data)
			if tc.name[:3] == "ok/" {
				if err != nil || r == nil {
					t.Fatalf("decode: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("decode accepted %q", tc.data)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
		})
	}
	r, _ := c.Decode(context.Background(), enc)
	if got := r.GetSession().(*openid.DefaultSession).Claims.Extra["big"]; got == nil || got.(interface{ String() string }).String() != "9007199254740993" {
		t.Fatalf("integer claim changed: %v", got)
	}
	if l, ok := r.(interface{ GetLang() language.Tag }); !ok || l.GetLang() != language.Chinese {
		t.Fatalf("lang lost")
	}
	if len(enc) == 0 || enc[0] != 'z' {
		t.Fatalf("expected a compressed record")
	}
	if _, err := c.Encode(nil); !errors.Is(err, storage.ErrInvalidArgument) {
		t.Fatalf("encode nil: %v", err)
	}

	// Plain (the memory store) writes JSON; both forms decode to the same request.
	plainCodec := testCodec()
	plainCodec.Plain = true
	one := sample()
	plain, err := plainCodec.Encode(one)
	if err != nil || len(plain) == 0 || plain[0] != '{' {
		t.Fatalf("plain encode: %v %.20q", err, plain)
	}
	compressed, _ := c.Encode(one)
	for name, data := range map[string][]byte{"plain": plain, "compressed": compressed} {
		back, err := c.Decode(context.Background(), data)
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := plainCodec.Encode(back); string(again) != string(plain) {
			t.Fatalf("%s round trip changed the record:\n%s\n%s", name, plain, again)
		}
	}
}

func TestHashKey(t *testing.T) {
	if storage.HashKey("at", "x") == storage.HashKey("rt", "x") {
		t.Fatal("kinds must separate keys")
	}
	if storage.HashKey("a", "bc") == storage.HashKey("ab", "c") {
		t.Fatal("kind/value boundary must be unambiguous")
	}
	if k := storage.HashKey("at", "secret-token"); len(k) != 43 {
		t.Fatalf("key length %d", len(k))
	}
}

// FuzzDecode: stored bytes may be corrupted (or written by a newer replica);
// Decode must return an error, never panic or inflate without bound.
func FuzzDecode(f *testing.F) {
	c := testCodec()
	enc, _ := c.Encode(sample())
	f.Add(enc)
	f.Add([]byte(`{"id":"r","cid":"portal","az":{"ru":"https://x/cb","rt":["code"]}}`))
	f.Add([]byte("z"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := c.Decode(context.Background(), data)
		if err == nil && r == nil {
			t.Fatal("nil request without error")
		}
	})
}
