//lint:file-ignore SA1019 SM2 public keys are *ecdsa.PublicKey on a curve outside the standard library (github.com/emmansun/gmsm); their affine X, Y are the only interface that library offers, and the keys are validated on the curve before use.

package signing

import (
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSM3KnownAnswers: GB/T 32905-2016 Appendix A, examples 1 and 2.
func TestSM3KnownAnswers(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"ok/abc", "abc", "66c7f0f4 62eeedd9 d1f2d46b dc10e4e2 4167c487 5cf2f7a2 297da02b 8f4ba8e0"},
		{"ok/abcd*16", strings.Repeat("abcd", 16), "debe9ff9 2275b8a1 38604889 c18e5a4d 6fdb70e5 387e5765 293dcba3 9c0c5732"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := sm3.Sum([]byte(tc.in))
			if hex.EncodeToString(got[:]) != strings.ReplaceAll(tc.want, " ", "") {
				t.Fatalf("SM3(%q) = %x", tc.in, got)
			}
		})
	}
}

// The SM2 signature example on the recommended curve (GM/T 0003.5-2012 /
// GB/T 32918.5-2017 annex; message "message digest"). On this curve the
// example's signer ID is the GM/T 0009 default "1234567812345678" (the
// ALICE123@YAHOO.COM example of GB/T 32918.2 uses a different test curve).
const (
	katD  = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8"
	katX  = "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
	katY  = "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
	katID = DefaultUID
	katZA = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3"
	katE  = "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640"
	katK  = "59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21"
	katR  = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
	katS  = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)

func TestSM2KnownAnswer(t *testing.T) {
	msg := []byte("message digest")
	priv, err := sm2.NewPrivateKey(unhex(t, katD))
	if err != nil {
		t.Fatal(err)
	}
	pub := &priv.PublicKey
	if pub.X.Cmp(new(big.Int).SetBytes(unhex(t, katX))) != 0 || pub.Y.Cmp(new(big.Int).SetBytes(unhex(t, katY))) != 0 {
		t.Fatalf("public key from d: %x %x", pub.X, pub.Y)
	}
	za, err := sm2.CalculateZA(pub, []byte(katID))
	if err != nil || hex.EncodeToString(za) != strings.ToLower(katZA) {
		t.Fatalf("Z_A = %x, %v", za, err)
	}
	e, err := sm2.CalculateSM2Hash(pub, msg, []byte(katID))
	if err != nil || hex.EncodeToString(e) != strings.ToLower(katE) {
		t.Fatalf("e = %x, %v", e, err)
	}
	// Reproduce (r, s) with the published k: r = (e + x1) mod n, s = (1+d)^-1 (k - r·d) mod n.
	params := sm2.P256().Params()
	n := params.N
	k := new(big.Int).SetBytes(unhex(t, katK))
	x1, _ := params.ScalarBaseMult(k.Bytes())
	r := new(big.Int).Add(new(big.Int).SetBytes(e), x1)
	r.Mod(r, n)
	d := priv.D
	s := new(big.Int).Mul(r, d)
	s.Sub(k, s)
	s.Mul(s, new(big.Int).ModInverse(new(big.Int).Add(d, big.NewInt(1)), n))
	s.Mod(s, n)
	wantR, wantS := new(big.Int).SetBytes(unhex(t, katR)), new(big.Int).SetBytes(unhex(t, katS))
	if r.Cmp(wantR) != 0 || s.Cmp(wantS) != 0 {
		t.Fatalf("reproduced r=%X s=%X", r, s)
	}
	// ok/the library verifies the published signature over Z_A‖M ...
	rs := append(unhex(t, katR), unhex(t, katS)...)
	der := rsToDER(rs[:32], rs[32:])
	if !sm2.VerifyASN1WithSM2(pub, []byte(katID), msg, der) {
		t.Fatal("published signature does not verify")
	}
	// ... and our verifier, given the same digest path, rejects a flipped bit.
	rs[63] ^= 1
	if sm2.VerifyASN1WithSM2(pub, []byte(katID), msg, rsToDER(rs[:32], rs[32:])) {
		t.Fatal("tampered signature verifies")
	}
	// ok/our Key derives the same public key and the same thumbprint twice.
	key, err := NewKey(AlgSM2SM3, priv)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Fatal("public key mismatch")
	}
}

// TestSM2KnownAnswerThroughOurVerifier feeds the published R‖S to the same
// strict verifier the JWS path uses (default UID, SM3 over Z_A‖M).
func TestSM2KnownAnswerThroughOurVerifier(t *testing.T) {
	priv, err := sm2.NewPrivateKey(unhex(t, katD))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := NewPublicKey(AlgSM2SM3, &priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rs := append(unhex(t, katR), unhex(t, katS)...)
	if err := pub.verifyRaw([]byte("message digest"), rs); err != nil {
		t.Fatalf("ok/published signature: %v", err)
	}
	if err := pub.verifyRaw([]byte("message digesT"), rs); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("fail/other message: %v", err)
	}
}
