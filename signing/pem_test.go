package signing

import (
	"bytes"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

func TestPKCS8PEM(t *testing.T) {
	keys := map[string]*Key{}
	for _, alg := range Algs() {
		keys[alg] = mustKey(t, alg)
	}
	for _, alg := range Algs() {
		for _, pw := range []string{"", "s3cret"} {
			name := "ok/" + alg + "/plain"
			if pw != "" {
				name = "ok/" + alg + "/encrypted"
			}
			t.Run(name, func(t *testing.T) {
				k := keys[alg]
				data, err := MarshalPKCS8PEM(k, []byte(pw))
				if err != nil {
					t.Fatal(err)
				}
				block, _ := pem.Decode(data)
				wantType := "PRIVATE KEY"
				if pw != "" {
					wantType = "ENCRYPTED PRIVATE KEY"
				}
				if block == nil || block.Type != wantType {
					t.Fatalf("block %v", block)
				}
				if alg == AlgSM2SM3 && pw == "" && !bytes.Contains(block.Bytes, []byte{0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d}) {
					t.Fatal("SM2 PKCS#8 lacks namedCurve 1.2.156.10197.1.301")
				}
				if alg == AlgSM2SM3 && pw != "" && !bytes.Contains(block.Bytes, []byte{0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x68, 0x02}) {
					t.Fatal("encrypted SM2 key is not SM4-CBC (1.2.156.10197.1.104.2)")
				}
				p, err := ParsePKCS8PEM(data, []byte(pw))
				if err != nil {
					t.Fatal(err)
				}
				if !p.Equal(k) || p.ID() != k.ID() || p.Signer() == nil {
					t.Fatal("reloaded key differs")
				}
				if alg == AlgSM2SM3 {
					if _, ok := p.Signer().(*sm2.PrivateKey); !ok {
						t.Fatalf("SM2 key loaded as %T", p.Signer())
					}
				}
				tok, err := SignClaims(p, "", map[string]int{})
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := Verify(tok, Keys{k}); err != nil {
					t.Fatal(err)
				}
				if pw != "" {
					if _, err := ParsePKCS8PEM(data, []byte("wrong")); !errors.Is(err, ErrInvalidKey) {
						t.Fatalf("fail/wrong password: %v", err)
					}
					if _, err := ParsePKCS8PEM(data, nil); !errors.Is(err, ErrInvalidKey) {
						t.Fatalf("fail/no password: %v", err)
					}
				}
			})
		}
	}
	sm := keys[AlgSM2SM3]
	plain, _ := MarshalPKCS8PEM(sm, nil)
	for name, in := range map[string][]byte{
		"fail/empty":         nil,
		"fail/garbage":       []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		"fail/trailing":      append(append([]byte(nil), plain...), plain...),
		"fail/wrong-type":    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}}),
		"fail/pem-headers":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}}),
		"fail/public-no-key": []byte("not pem"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParsePKCS8PEM(in, nil)
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	t.Run("fail/public-only", func(t *testing.T) {
		pub, _ := NewPublicKey(AlgSM2SM3, sm.Public())
		if _, err := MarshalPKCS8PEM(pub, nil); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("err = %v", err)
		}
	})
}
