//lint:file-ignore SA1019 SM2 public keys are *ecdsa.PublicKey on a curve outside the standard library (github.com/emmansun/gmsm); their affine X, Y are the only interface that library offers, and the keys are validated on the curve before use.

package signing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// laxResolver returns its key for any kid and alg, so Verify's own
// algorithm binding is what is tested.
type laxResolver struct{ k *Key }

func (l laxResolver) ResolveKey(string, string) (*Key, error) { return l.k, nil }

var _ KeyResolver = laxResolver{}

func parts(tok string) (h, p, s string) {
	a := strings.SplitN(tok, ".", 3)
	return a[0], a[1], a[2]
}

func enc(b []byte) string { return b64.EncodeToString(b) }

func encJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return enc(b)
}

func TestVerifyNegative(t *testing.T) {
	keys := map[string]*Key{}
	for _, alg := range Algs() {
		keys[alg] = mustKey(t, alg)
	}
	all := Keys{keys[AlgSM2SM3], keys[AlgES256], keys[AlgRS256]}
	for _, alg := range Algs() {
		k := keys[alg]
		tok, err := SignClaims(k, "JWT", map[string]any{"sub": "alice", "aud": "rp"})
		if err != nil {
			t.Fatal(err)
		}
		h, p, s := parts(tok)
		sig, _ := b64.DecodeString(s)
		var n *big.Int
		if k.ec != nil {
			n = k.ec.Curve.Params().N
		}
		rs := func(r, s *big.Int) string {
			b := make([]byte, 64)
			r.FillBytes(b[:32])
			s.FillBytes(b[32:])
			return h + "." + p + "." + enc(b)
		}
		flip := append([]byte(nil), sig...)
		flip[len(flip)/2] ^= 0x01
		type tc struct {
			name  string
			token string
			res   KeyResolver
			want  error
		}
		cases := []tc{
			{"fail/tampered-payload", h + "." + encJSON(t, map[string]any{"sub": "mallory", "aud": "rp"}) + "." + s, all, ErrInvalidSignature},
			{"fail/tampered-header", encJSON(t, map[string]any{"alg": alg, "kid": k.ID(), "typ": "at+jwt"}) + "." + p + "." + s, all, ErrInvalidSignature},
			{"fail/tampered-signature", h + "." + p + "." + enc(flip), all, ErrInvalidSignature},
			{"fail/short-signature", h + "." + p + "." + enc(sig[:len(sig)-1]), all, ErrInvalidSignature},
			{"fail/long-signature", h + "." + p + "." + enc(append(append([]byte(nil), sig...), 0)), all, ErrInvalidSignature},
			{"fail/alg-none", encJSON(t, map[string]any{"alg": "none", "kid": k.ID()}) + "." + p + ".", all, ErrMalformed},
			{"fail/alg-none-with-sig", encJSON(t, map[string]any{"alg": "none", "kid": k.ID()}) + "." + p + "." + s, all, ErrUnsupportedAlg},
			{"fail/alg-HS256", encJSON(t, map[string]any{"alg": "HS256", "kid": k.ID()}) + "." + p + "." + s, all, ErrUnsupportedAlg},
			{"fail/alg-lowercase", encJSON(t, map[string]any{"alg": strings.ToLower(alg), "kid": k.ID()}) + "." + p + "." + s, all, ErrUnsupportedAlg},
			{"fail/unknown-kid", encJSON(t, map[string]any{"alg": alg, "kid": "nope"}) + "." + p + "." + s, all, ErrUnknownKey},
			{"fail/no-kid-ambiguous", encJSON(t, map[string]any{"alg": alg}) + "." + p + "." + s, Keys{k, k.withID("other")}, ErrUnknownKey},
			{"fail/nil-resolver", tok, nil, ErrUnknownKey},
			{"fail/crit", encJSON(t, map[string]any{"alg": alg, "kid": k.ID(), "crit": []string{"exp"}, "exp": 1}) + "." + p + "." + s, all, ErrMalformed},
			{"fail/b64", encJSON(t, map[string]any{"alg": alg, "kid": k.ID(), "b64": false}) + "." + p + "." + s, all, ErrMalformed},
			{"fail/duplicate-alg", enc([]byte(`{"alg":"`+alg+`","alg":"none","kid":"`+k.ID()+`"}`)) + "." + p + "." + s, all, ErrMalformed},
			{"fail/alg-not-string", enc([]byte(`{"alg":1,"kid":"`+k.ID()+`"}`)) + "." + p + "." + s, all, ErrMalformed},
			{"fail/header-array", enc([]byte(`["alg"]`)) + "." + p + "." + s, all, ErrMalformed},
			{"fail/header-null", enc([]byte(`null`)) + "." + p + "." + s, all, ErrMalformed},
			{"fail/header-trailing", enc([]byte(`{"alg":"`+alg+`"}{}`)) + "." + p + "." + s, all, ErrMalformed},
			{"fail/header-not-json", enc([]byte("alg")) + "." + p + "." + s, all, ErrMalformed},
			{"fail/two-parts", h + "." + p, all, ErrMalformed},
			{"fail/four-parts", tok + ".x", all, ErrMalformed},
			{"fail/padding", h + "." + p + "." + s + "==", all, ErrMalformed},
			{"fail/std-base64", h + "." + p + "." + strings.NewReplacer("-", "+", "_", "/").Replace(s) + "+", all, ErrMalformed},
			{"fail/empty", "", all, ErrMalformed},
			{"fail/oversize", strings.Repeat("a", MaxTokenSize+1), all, ErrMalformed},
		}
		if n != nil {
			nm1 := new(big.Int).Sub(n, big.NewInt(1))
			max := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))
			r0, s0 := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
			cases = append(cases,
				tc{"fail/der-not-rs", h + "." + p + "." + enc(rsToDER(sig[:32], sig[32:])), all, ErrInvalidSignature},
				tc{"fail/r-zero", rs(big.NewInt(0), s0), all, ErrInvalidSignature},
				tc{"fail/s-zero", rs(r0, big.NewInt(0)), all, ErrInvalidSignature},
				tc{"fail/r-is-n", rs(n, s0), all, ErrInvalidSignature},
				tc{"fail/s-is-n", rs(r0, n), all, ErrInvalidSignature},
				tc{"fail/r-above-n", rs(max, s0), all, ErrInvalidSignature},
				tc{"fail/s-n-minus-1", rs(r0, nm1), all, ErrInvalidSignature},
				tc{"fail/r-plus-n", rs(new(big.Int).Add(r0, n).Mod(new(big.Int).Add(r0, n), new(big.Int).Lsh(big.NewInt(1), 256)), s0), all, ErrInvalidSignature},
			)
		}
		// An SM2 key must never verify under ES256 and the reverse; RS256 likewise.
		for _, other := range Algs() {
			if other == alg {
				continue
			}
			swapped := encJSON(t, map[string]any{"alg": other, "kid": k.ID(), "typ": "JWT"}) + "." + p + "." + s
			cases = append(cases,
				tc{"fail/" + alg + "-key-as-" + other, swapped, all, ErrAlgMismatch},
				tc{"fail/" + alg + "-key-as-" + other + "-lax-resolver", swapped, laxResolver{k}, ErrAlgMismatch},
			)
		}
		for _, c := range cases {
			t.Run(alg+"/"+c.name, func(t *testing.T) {
				_, payload, err := Verify(c.token, c.res)
				if !errors.Is(err, c.want) {
					t.Fatalf("err = %v, want %v", err, c.want)
				}
				if payload != nil {
					t.Fatal("payload returned with an error")
				}
			})
		}
		t.Run(alg+"/ok/untampered", func(t *testing.T) {
			if _, _, err := Verify(tok, all); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPublicKeyNegative(t *testing.T) {
	sm2k := mustKey(t, AlgSM2SM3).Public().(*ecdsa.PublicKey)
	p256 := mustKey(t, AlgES256).Public().(*ecdsa.PublicKey)
	one := big.NewInt(1)
	for _, c := range []struct {
		name string
		alg  string
		pub  any
		want error
	}{
		{"fail/sm2-off-curve", AlgSM2SM3, &ecdsa.PublicKey{Curve: sm2.P256(), X: sm2k.X, Y: new(big.Int).Add(sm2k.Y, one)}, ErrInvalidKey},
		{"fail/sm2-identity", AlgSM2SM3, &ecdsa.PublicKey{Curve: sm2.P256(), X: new(big.Int), Y: new(big.Int)}, ErrInvalidKey},
		{"fail/p256-point-on-sm2", AlgSM2SM3, &ecdsa.PublicKey{Curve: sm2.P256(), X: p256.X, Y: p256.Y}, ErrInvalidKey},
		{"fail/sm2-point-on-p256", AlgES256, &ecdsa.PublicKey{Curve: elliptic.P256(), X: sm2k.X, Y: sm2k.Y}, ErrInvalidKey},
		{"fail/p256-off-curve", AlgES256, &ecdsa.PublicKey{Curve: elliptic.P256(), X: p256.X, Y: new(big.Int).Add(p256.Y, one)}, ErrInvalidKey},
		{"fail/p256-identity", AlgES256, &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int), Y: new(big.Int)}, ErrInvalidKey},
		{"fail/sm2-key-as-ES256", AlgES256, sm2k, ErrInvalidKey},
		{"fail/p256-key-as-SM2SM3", AlgSM2SM3, p256, ErrInvalidKey},
		{"fail/negative-x", AlgES256, &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).Neg(p256.X), Y: p256.Y}, ErrInvalidKey},
		{"fail/nil", AlgES256, nil, ErrInvalidKey},
		{"fail/none", "none", p256, ErrUnsupportedAlg},
		{"fail/HS256", "HS256", p256, ErrUnsupportedAlg},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := NewPublicKey(c.alg, c.pub); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}
