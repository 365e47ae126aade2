package signing

import (
	"errors"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/golang-jwt/jwt/v5"
)

func TestGolangJWT(t *testing.T) {
	RegisterJWT()
	RegisterJWT() // idempotent
	k := mustKey(t, AlgSM2SM3)
	es := mustKey(t, AlgES256)
	claims := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Minute).Unix()}

	t.Run("ok/jwt-signs-we-verify", func(t *testing.T) {
		tok := jwt.NewWithClaims(SigningMethodSM2SM3, claims)
		tok.Header["kid"] = k.ID()
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := Verify(s, Keys{k}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ok/we-sign-jwt-verifies", func(t *testing.T) {
		s, err := SignClaims(k, "JWT", claims)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []any{k, k.Signer(), k.Public()} {
			p, err := jwt.Parse(s, func(*jwt.Token) (any, error) { return key, nil }, jwt.WithValidMethods([]string{AlgSM2SM3}))
			if err != nil || !p.Valid {
				t.Fatalf("%T: %v", key, err)
			}
		}
	})
	t.Run("fail/sm2-key-under-ES256", func(t *testing.T) {
		s, _ := SignClaims(k, "JWT", claims)
		// golang-jwt's own ES256 must reject an SM2 key, and our method an ES256 key.
		_, err := jwt.Parse(s, func(*jwt.Token) (any, error) { return es, nil }, jwt.WithValidMethods([]string{AlgSM2SM3}))
		if err == nil {
			t.Fatal("ES256 key verified an SM2SM3 token")
		}
		if err := SigningMethodSM2SM3.Verify("a.b", make([]byte, 64), es); !errors.Is(err, ErrAlgMismatch) {
			t.Fatalf("ES256 *Key: %v", err)
		}
		if err := SigningMethodSM2SM3.Verify("a.b", make([]byte, 64), es.Public()); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("P-256 public key: %v", err)
		}
		if _, err := SigningMethodSM2SM3.Sign("a.b", es); !errors.Is(err, ErrAlgMismatch) {
			t.Fatalf("sign with ES256 key: %v", err)
		}
		if _, err := SigningMethodSM2SM3.Sign("a.b", "secret"); !errors.Is(err, jwt.ErrInvalidKeyType) {
			t.Fatalf("sign with string: %v", err)
		}
	})
	t.Run("fail/der-signature", func(t *testing.T) {
		sig, _ := SigningMethodSM2SM3.Sign("a.b", k)
		if err := SigningMethodSM2SM3.Verify("a.b", rsToDER(sig[:32], sig[32:]), k); !errors.Is(err, ErrInvalidSignature) {
			t.Fatalf("DER: %v", err)
		}
		if err := SigningMethodSM2SM3.Verify("a.b", sig, k.Signer().(*sm2.PrivateKey)); err != nil {
			t.Fatalf("ok/private key verifies: %v", err)
		}
	})
}
