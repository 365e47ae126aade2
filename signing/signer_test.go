package signing

import (
	"crypto"
	"crypto/rand"
	"errors"
	"io"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// opaqueSigner stands in for an HSM: only crypto.Signer is visible.
type opaqueSigner struct {
	inner crypto.Signer
	// digestOnly makes an SM2 signer ignore the SM2 options and sign the
	// input as a digest — the mistake NewKey's self-test must catch.
	digestOnly bool
}

var _ crypto.Signer = opaqueSigner{}

func (o opaqueSigner) Public() crypto.PublicKey { return o.inner.Public() }

func (o opaqueSigner) Sign(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if o.digestOnly {
		return o.inner.Sign(r, msg, crypto.Hash(0))
	}
	return o.inner.Sign(r, msg, opts)
}

func TestNewKeyOpaqueSigner(t *testing.T) {
	for _, alg := range []string{AlgSM2SM3, AlgES256} {
		t.Run("ok/"+alg, func(t *testing.T) {
			soft := mustKey(t, alg)
			k, err := NewKey(alg, opaqueSigner{inner: soft.Signer()})
			if err != nil {
				t.Fatal(err)
			}
			if k.ID() != soft.ID() {
				t.Fatal("kid depends on the signer type")
			}
			tok, err := SignClaims(k, "JWT", map[string]int{"x": 1})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := Verify(tok, Keys{soft}); err != nil {
				t.Fatal(err)
			}
			if _, err := MarshalPKCS8PEM(k, nil); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("fail/export of an opaque key: %v", err)
			}
		})
	}
	t.Run("fail/sm2-signer-ignoring-options", func(t *testing.T) {
		priv, _ := sm2.GenerateKey(rand.Reader)
		if _, err := NewKey(AlgSM2SM3, opaqueSigner{inner: priv, digestOnly: true}); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("fail/sm2-signer-for-ES256", func(t *testing.T) {
		priv, _ := sm2.GenerateKey(rand.Reader)
		if _, err := NewKey(AlgES256, opaqueSigner{inner: priv}); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("fail/nil", func(t *testing.T) {
		if _, err := NewKey(AlgES256, nil); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("fail/public-key-cannot-sign", func(t *testing.T) {
		pub, _ := NewPublicKey(AlgES256, mustKey(t, AlgES256).Public())
		if _, err := SignClaims(pub, "", map[string]int{}); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("err = %v", err)
		}
		if _, err := Sign(pub, nil, nil); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("fail/header-sets-alg", func(t *testing.T) {
		if _, err := Sign(mustKey(t, AlgES256), map[string]any{"alg": "none"}, nil); !errors.Is(err, ErrMalformed) {
			t.Fatalf("err = %v", err)
		}
	})
}
