package signing

import (
	"crypto/rand"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// Benchmarks run in one `go test -bench` so the JWS/raw ratios share the
// machine's load: raw SM2 (library call on the same signing input) against
// the full SM2SM3 JWS path (header, base64url, R‖S conversion, strict parse),
// and ES256/RS256 JWS beside them.

var benchClaims = map[string]any{
	"iss": "https://essc.example/gm", "sub": "AbCdEfGhIjKlMnOpQrStUvWxYz012345",
	"aud": "portal", "exp": 1900000000, "iat": 1899999400, "nonce": "n-0S6_WzA2Mj",
	"acr": "urn:essc:acr:pin", "amr": []string{"pin", "hwk"},
}

func benchToken(b *testing.B, k *Key) string {
	tok, err := SignClaims(k, "JWT", benchClaims)
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

func BenchmarkSM2RawSign(b *testing.B) {
	k := mustKey(b, AlgSM2SM3)
	priv := k.Signer().(*sm2.PrivateKey)
	tok := benchToken(b, k)
	msg := []byte(tok[:strings.LastIndexByte(tok, '.')])
	b.ReportAllocs()
	for b.Loop() {
		if _, err := priv.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSM2RawVerify(b *testing.B) {
	k := mustKey(b, AlgSM2SM3)
	priv := k.Signer().(*sm2.PrivateKey)
	tok := benchToken(b, k)
	msg := []byte(tok[:strings.LastIndexByte(tok, '.')])
	der, err := priv.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !sm2.VerifyASN1WithSM2(&priv.PublicKey, nil, msg, der) {
			b.Fatal("verify")
		}
	}
}

func benchJWS(b *testing.B, alg string) {
	k := mustKey(b, alg)
	b.Run("sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := SignClaims(k, "JWT", benchClaims); err != nil {
				b.Fatal(err)
			}
		}
	})
	tok := benchToken(b, k)
	keys := Keys{k}
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := Verify(tok, keys); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkJWSSM2SM3(b *testing.B) { benchJWS(b, AlgSM2SM3) }
func BenchmarkJWSES256(b *testing.B)  { benchJWS(b, AlgES256) }
func BenchmarkJWSRS256(b *testing.B)  { benchJWS(b, AlgRS256) }

func BenchmarkKeySetActive(b *testing.B) {
	ks, _ := NewKeySet(KeySetConfig{})
	if _, err := ks.EnsureActive(ks.now(), AlgSM2SM3, AlgES256); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ks.Active(AlgSM2SM3); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkJWSOverhead measures the non-cryptographic part of Verify (split,
// base64url, strict header parse) for the SM2SM3 token: the JWS overhead.
func BenchmarkJWSOverhead(b *testing.B) {
	k := mustKey(b, AlgSM2SM3)
	tok := benchToken(b, k)
	d1 := strings.IndexByte(tok, '.')
	b.ReportAllocs()
	for b.Loop() {
		var h Header
		hdr, _ := b64.DecodeString(tok[:d1])
		if err := parseHeader(hdr, &h); err != nil {
			b.Fatal(err)
		}
		if _, err := b64.DecodeString(tok[d1+1 : strings.LastIndexByte(tok, '.')]); err != nil {
			b.Fatal(err)
		}
	}
}
