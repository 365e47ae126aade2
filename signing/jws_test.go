package signing

import (
	"errors"
	"testing"
)

func mustKey(t testing.TB, alg string) *Key {
	t.Helper()
	k, err := GenerateKey(alg)
	if err != nil {
		t.Fatalf("GenerateKey(%s): %v", alg, err)
	}
	return k
}

func TestSignVerifyRoundTrip(t *testing.T) {
	for _, alg := range Algs() {
		t.Run("ok/"+alg, func(t *testing.T) {
			k := mustKey(t, alg)
			tok, err := SignClaims(k, "JWT", map[string]any{"sub": "x"})
			if err != nil {
				t.Fatal(err)
			}
			h, p, err := Verify(tok, Keys{k})
			if err != nil {
				t.Fatal(err)
			}
			if h.Alg != alg || h.Kid != k.ID() || h.Typ != "JWT" || string(p) != `{"sub":"x"}` {
				t.Fatalf("header %+v payload %s", h, p)
			}
			tok2, err := Sign(k, map[string]any{"typ": "at+jwt", "x5t": "abc"}, []byte("hi"))
			if err != nil {
				t.Fatal(err)
			}
			if _, p, err = Verify(tok2, Keys{k}); err != nil || string(p) != "hi" {
				t.Fatalf("Verify: %v %q", err, p)
			}
			other := mustKey(t, alg)
			if _, _, err := Verify(tok, Keys{other.withID(k.ID())}); !errors.Is(err, ErrInvalidSignature) {
				t.Fatalf("other key: %v", err)
			}
		})
	}
}
