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
		{"fail/trailing-data", []byte(`{"id":"r2","cid":"portal"} {}`), nil},
		{"fail/session-not-an-object", []byte(`{"id":"r2","cid":"portal","sess":[1]}`), nil},
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
	// The last parsed language is kept: records in other languages, and an
	// invalid one, still decode to their own.
	for _, want := range []language.Tag{language.English, language.Chinese, language.Und, language.English} {
		in := sample()
		in.Lang = want
		data, _ := c.Encode(in)
		if want == language.Und {
			data = []byte(`{"id":"r","cid":"portal","lang":"not a tag!"}`)
		}
		back, err := c.Decode(context.Background(), data)
		if err != nil {
			t.Fatal(err)
		}
		if got := back.(interface{ GetLang() language.Tag }).GetLang(); got != want {
			t.Fatalf("lang %v decoded as %v", want, got)
		}
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

// realisticRequest is the size and shape of a stored essc authorize request.
func realisticRequest() *fosite.AuthorizeRequest {
	now := time.Now().UTC()
	sess := openid.NewDefaultSession()
	sess.Subject = "Yk3p0b0m1v7c3r8hX2sQq9e1m0Jt4nR6aZ8uW5dL2cF"
	sess.Claims.Subject, sess.Claims.Issuer = sess.Subject, "https://essc.example.gov.cn/gm"
	sess.Claims.AuthTime, sess.Claims.RequestedAt = now, now
	sess.Claims.AuthenticationContextClassReference = "urn:essc:acr:pin"
	sess.Claims.AuthenticationMethodsReferences = []string{"hwk", "pin"}
	sess.Claims.Extra = map[string]any{"ecard": "e-3f7a9c1d2b", "card_status": "active", "n": int64(7)}
	sess.SetExpiresAt(fosite.AuthorizeCode, now.Add(time.Minute))
	ru, _ := url.Parse("https://portal.example.gov.cn/oidc/callback")
	return &fosite.AuthorizeRequest{
		ResponseTypes: fosite.Arguments{"code"}, RedirectURI: ru, State: "af0ifjsldkj-3a8f",
		HandledResponseTypes: fosite.Arguments{"code"}, ResponseMode: fosite.ResponseModeQuery,
		Request: fosite.Request{
			ID: "req-1", RequestedAt: now, Client: &fosite.DefaultClient{ID: "portal-zhejiang-rsj"},
			RequestedScope: fosite.Arguments{"openid", "profile"}, GrantedScope: fosite.Arguments{"openid", "profile"},
			Form: url.Values{"client_id": {"portal-zhejiang-rsj"}, "redirect_uri": {ru.String()},
				"scope": {"openid profile"}, "state": {"af0ifjsldkj-3a8f"}, "nonce": {"n-0S6_WzA2Mj"},
				"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}},
			Session: sess,
		},
	}
}

// BenchmarkRequestCodec: encoding and decoding one stored request (plain:
// codes and the in-memory store; compressed: tokens in Redis).
func BenchmarkRequestCodec(b *testing.B) {
	for _, plain := range []bool{true, false} {
		c := testCodec()
		c.Plain = plain
		name := map[bool]string{true: "plain", false: "deflate"}[plain]
		enc, err := c.Encode(realisticRequest())
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/encode", func(b *testing.B) {
			b.ReportAllocs()
			r := realisticRequest()
			for b.Loop() {
				if _, err := c.Encode(r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Decode(context.Background(), enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// A code's PKCE and OIDC records: the request without its session.
	c := testCodec()
	c.Plain = true
	r := realisticRequest()
	r.Form = url.Values{"nonce": r.Form["nonce"]}
	enc, err := c.EncodeWithoutSession(r)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("plain/encode-without-session", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.EncodeWithoutSession(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("plain/decode-without-session", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Decode(context.Background(), enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
