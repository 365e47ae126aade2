package signing

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// fuzzKeys are fixed keys (the GM/T 0003.5 example key and a fixed P-256
// scalar) so committed seed tokens stay valid.
func fuzzKeys(t testing.TB) Keys {
	t.Helper()
	sk, err := sm2.NewPrivateKey(unhex(t, katD))
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), unhex(t, "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewKey(AlgSM2SM3, sk)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewKey(AlgES256, ek)
	if err != nil {
		t.Fatal(err)
	}
	return Keys{a, b}
}

var sentinels = []error{ErrMalformed, ErrUnsupportedAlg, ErrUnknownKey, ErrAlgMismatch, ErrInvalidSignature, ErrInvalidKey}

func typed(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzVerify: Verify never panics, every error is one of the sentinels, and a
// success returns the key's algorithm and the decoded payload.
func FuzzVerify(f *testing.F) {
	keys := fuzzKeys(f)
	for _, k := range keys {
		tok, err := SignClaims(k, "JWT", map[string]any{"sub": "seed", "aud": []string{"rp"}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	f.Add("")
	f.Add("..")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("eyJhbGciOiJTTTJTTTMiLCJraWQiOiJ4In0.e30.AAAA")
	f.Fuzz(func(t *testing.T, token string) {
		h, payload, err := Verify(token, keys)
		if err != nil {
			if !typed(err) {
				t.Fatalf("untyped error %v", err)
			}
			if payload != nil {
				t.Fatal("payload with error")
			}
			return
		}
		k, rerr := keys.ResolveKey(h.Kid, h.Alg)
		if rerr != nil || k.Alg() != h.Alg {
			t.Fatalf("verified under %+v: %v", h, rerr)
		}
		if !bytes.Contains([]byte(token), []byte(b64.EncodeToString(payload))) {
			t.Fatal("payload does not match the token")
		}
	})
}

// FuzzParseJWK: ParseJWK never panics, errors are typed, and a parsed key
// round-trips through PublicJWK to the same key.
func FuzzParseJWK(f *testing.F) {
	for _, k := range fuzzKeys(f) {
		b, _ := json.Marshal(k.PublicJWK())
		f.Add(b)
	}
	f.Add([]byte(`{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB"}`))
	f.Add([]byte(`{"kty":"EC","crv":"SM2","x":"AA","y":"AA"}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseJWK(data)
		if err != nil {
			if !typed(err) {
				t.Fatalf("untyped error %v", err)
			}
		} else {
			b, _ := json.Marshal(k.PublicJWK())
			k2, err := ParseJWK(b)
			if err != nil || !k2.Equal(k) || k2.ID() != k.ID() {
				t.Fatalf("round trip: %v", err)
			}
		}
		if _, err := ParseJWKS(data); err != nil && !typed(err) {
			t.Fatalf("untyped JWKS error %v", err)
		}
	})
}
