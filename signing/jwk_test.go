package signing

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestJWKRoundTrip(t *testing.T) {
	for _, alg := range Algs() {
		t.Run("ok/"+alg, func(t *testing.T) {
			k := mustKey(t, alg)
			raw, err := json.Marshal(k.PublicJWK())
			if err != nil {
				t.Fatal(err)
			}
			if alg == AlgSM2SM3 && !strings.Contains(string(raw), `"kty":"EC","crv":"SM2"`) {
				t.Fatalf("SM2 JWK %s", raw)
			}
			p, err := ParseJWK(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !p.Equal(k) || p.ID() != k.ID() || p.Alg() != alg || p.Signer() != nil {
				t.Fatalf("parsed %+v", p)
			}
			tok, _ := SignClaims(k, "JWT", map[string]int{"a": 1})
			if _, _, err := Verify(tok, Keys{p}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestThumbprintRFC7638 checks the RFC 7638 §3.1 example.
func TestThumbprintRFC7638(t *testing.T) {
	n := "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	raw := `{"kty":"RSA","n":"` + n + `","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`
	k, err := ParseJWK([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Thumbprint(); got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("thumbprint %s", got)
	}
	if k.ID() != "2011-04-29" {
		t.Fatalf("kid %s", k.ID())
	}
}

func TestParseJWKNegative(t *testing.T) {
	sm2 := mustKey(t, AlgSM2SM3).PublicJWK()
	p256 := mustKey(t, AlgES256).PublicJWK()
	mod := func(j JWK, f func(*JWK)) string {
		f(&j)
		b, _ := json.Marshal(j)
		return string(b)
	}
	x := sm2.X
	offY := []byte(sm2.Y)
	if offY[5] == 'A' {
		offY[5] = 'B'
	} else {
		offY[5] = 'A'
	}
	for _, c := range []struct {
		name, in string
		want     error
	}{
		{"fail/not-json", `{`, ErrMalformed},
		{"fail/array", `[]`, ErrMalformed},
		{"fail/trailing", mod(sm2, func(*JWK) {}) + `{}`, ErrMalformed},
		{"fail/duplicate-member", `{"kty":"EC","kty":"RSA"}`, ErrMalformed},
		{"fail/no-kty", `{"crv":"SM2"}`, ErrMalformed},
		{"fail/kty-oct", `{"kty":"oct","k":"AAAA"}`, ErrInvalidKey},
		{"fail/kty-OKP", `{"kty":"OKP","crv":"Ed25519","x":"AAAA"}`, ErrUnsupportedAlg},
		{"fail/crv-P-384", mod(p256, func(j *JWK) { j.Crv = "P-384"; j.Alg = "" }), ErrUnsupportedAlg},
		{"fail/private-d", strings.TrimSuffix(mod(sm2, func(*JWK) {}), "}") + `,"d":"AAAA"}`, ErrInvalidKey},
		{"fail/sm2-as-ES256", mod(sm2, func(j *JWK) { j.Alg = AlgES256 }), ErrAlgMismatch},
		{"fail/p256-as-SM2SM3", mod(p256, func(j *JWK) { j.Alg = AlgSM2SM3 }), ErrAlgMismatch},
		{"fail/sm2-point-labelled-P-256", mod(sm2, func(j *JWK) { j.Crv = "P-256"; j.Alg = "" }), ErrInvalidKey},
		{"fail/off-curve", mod(sm2, func(j *JWK) { j.Y = string(offY) }), ErrInvalidKey},
		{"fail/identity", mod(sm2, func(j *JWK) { j.X = b64.EncodeToString(make([]byte, 32)); j.Y = j.X }), ErrInvalidKey},
		{"fail/short-x", mod(sm2, func(j *JWK) { j.X = x[:42] }), ErrMalformed},
		{"fail/padded-x", mod(sm2, func(j *JWK) { j.X = x + "=" }), ErrMalformed},
		{"fail/use-enc", mod(sm2, func(j *JWK) { j.Use = "enc" }), ErrInvalidKey},
		{"fail/x-number", `{"kty":"EC","crv":"SM2","x":1,"y":"` + sm2.Y + `"}`, ErrMalformed},
		{"fail/rsa-short", `{"kty":"RSA","n":"` + b64.EncodeToString(make([]byte, 1)) + `","e":"AQAB"}`, ErrMalformed},
		{"fail/rsa-1024", `{"kty":"RSA","n":"` + b64.EncodeToString(append([]byte{0xc1}, make([]byte, 127)...)) + `","e":"AQAB"}`, ErrInvalidKey},
		{"fail/rsa-e-even", `{"kty":"RSA","n":"` + b64.EncodeToString(append([]byte{0xc1}, make([]byte, 255)...)) + `","e":"AAI"}`, ErrMalformed},
		{"fail/empty-kid", mod(sm2, func(j *JWK) { j.Kid = "" })[:0] + strings.Replace(mod(sm2, func(*JWK) {}), `"kid":"`+sm2.Kid+`"`, `"kid":""`, 1), ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := ParseJWK([]byte(c.in)); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestParseJWKS(t *testing.T) {
	a, b := mustKey(t, AlgSM2SM3), mustKey(t, AlgES256)
	set := Keys{a, b}.JWKS()
	raw, _ := json.Marshal(set)
	t.Run("ok/roundtrip", func(t *testing.T) {
		ks, err := ParseJWKS(raw)
		if err != nil || len(ks) != 2 {
			t.Fatalf("%v %d", err, len(ks))
		}
		if k, err := ks.ResolveKey(a.ID(), AlgSM2SM3); err != nil || !k.Equal(a) {
			t.Fatal(err)
		}
		if _, err := ks.ResolveKey(a.ID(), AlgES256); !errors.Is(err, ErrAlgMismatch) {
			t.Fatalf("fail/alg: %v", err)
		}
	})
	t.Run("ok/skips-unsupported", func(t *testing.T) {
		in := `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},` +
			`{"kty":"EC","use":"enc","crv":"P-256","x":"AA","y":"AA"},` + string(mustJSON(t, b.PublicJWK())) + `]}`
		ks, err := ParseJWKS([]byte(in))
		if err != nil || len(ks) != 1 {
			t.Fatalf("%v %d", err, len(ks))
		}
	})
	for name, in := range map[string]string{
		"fail/no-keys":      `{}`,
		"fail/keys-object":  `{"keys":{}}`,
		"fail/duplicate":    `{"keys":[` + string(mustJSON(t, a.PublicJWK())) + `,` + string(mustJSON(t, a.PublicJWK())) + `]}`,
		"fail/one-bad-key":  `{"keys":[` + string(mustJSON(t, a.PublicJWK())) + `,{"kty":"EC","crv":"SM2","x":"AA","y":"AA"}]}`,
		"fail/trailing":     string(raw) + " []",
		"fail/dup-keys-mem": `{"keys":[],"keys":[]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseJWKS([]byte(in)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHalfHash(t *testing.T) {
	// SM3("abc") left half, and SHA-256 of the OIDC Core example access token
	// is not published; check lengths and algorithm separation instead.
	sm, err := HalfHash(AlgSM2SM3, "abc")
	if err != nil || sm != b64.EncodeToString(unhex(t, "66c7f0f462eeedd9d1f2d46bdc10e4e2")) {
		t.Fatalf("ok/SM2SM3: %s %v", sm, err)
	}
	es, _ := HalfHash(AlgES256, "abc")
	rs, _ := HalfHash(AlgRS256, "abc")
	if es != b64.EncodeToString(unhex(t, "ba7816bf8f01cfea414140de5dae2223")) || rs != es {
		t.Fatalf("ok/SHA-256: %s %s", es, rs)
	}
	if _, err := HalfHash("none", "abc"); !errors.Is(err, ErrUnsupportedAlg) {
		t.Fatalf("fail/none: %v", err)
	}
}
