//lint:file-ignore SA1019 SM2 public keys are *ecdsa.PublicKey on a curve outside the standard library (github.com/emmansun/gmsm); their affine X, Y are the only interface that library offers, and the keys are validated on the curve before use.

package signing

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
)

// tjfocKey converts an SM2 Key's private half into tjfoc/gmsm's type.
func tjfocKey(t *testing.T, k *Key) *tjsm2.PrivateKey {
	t.Helper()
	p := k.Signer().(*sm2.PrivateKey)
	tk := &tjsm2.PrivateKey{D: new(big.Int).Set(p.D)}
	tk.Curve = tjsm2.P256Sm2()
	tk.X, tk.Y = new(big.Int).Set(p.X), new(big.Int).Set(p.Y)
	return tk
}

// TestInteropTjfoc: an independent SM2 implementation agrees with ours in
// both directions over the JWS signing input with the default UID.
func TestInteropTjfoc(t *testing.T) {
	k := mustKey(t, AlgSM2SM3)
	tk := tjfocKey(t, k)
	for i := 0; i < 8; i++ {
		tok, err := SignClaims(k, "JWT", map[string]any{"i": i, "iss": "https://essc.example/gm"})
		if err != nil {
			t.Fatal(err)
		}
		dot := strings.LastIndexByte(tok, '.')
		sig, err := b64.DecodeString(tok[dot+1:])
		if err != nil || len(sig) != 64 {
			t.Fatalf("signature: %v %d", err, len(sig))
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !tjsm2.Sm2Verify(&tk.PublicKey, []byte(tok[:dot]), defaultUID, r, s) {
			t.Fatalf("ok/ours→tjfoc: tjfoc rejects our signature %d", i)
		}
		// tjfoc signs the same input; re-encoded as R‖S it verifies under ours.
		tr, ts, err := tjsm2.Sm2Sign(tk, []byte(tok[:dot]), defaultUID, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		rs := make([]byte, 64)
		tr.FillBytes(rs[:32])
		ts.FillBytes(rs[32:])
		theirs := tok[:dot] + "." + b64.EncodeToString(rs)
		if _, _, err := Verify(theirs, Keys{k}); err != nil {
			t.Fatalf("ok/tjfoc→ours: %v", err)
		}
		// fail/tjfoc with another UID must not verify under ours.
		tr, ts, _ = tjsm2.Sm2Sign(tk, []byte(tok[:dot]), []byte("ALICE123@YAHOO.COM"), rand.Reader)
		tr.FillBytes(rs[:32])
		ts.FillBytes(rs[32:])
		if _, _, err := Verify(tok[:dot]+"."+b64.EncodeToString(rs), Keys{k}); !errors.Is(err, ErrInvalidSignature) {
			t.Fatalf("fail/other uid: %v", err)
		}
	}
}

// TestInteropOpenSSL cross-checks with OpenSSL 3 pkeyutl (raw input, SM3
// digest, distid 1234567812345678, DER signatures) where it supports SM2.
func TestInteropOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed: skipping the OpenSSL cross-check")
	}
	if out, err := exec.Command(bin, "version").Output(); err != nil || !bytes.HasPrefix(out, []byte("OpenSSL 3")) {
		t.Skipf("openssl is not OpenSSL 3 (%q): skipping", out)
	}
	dir := t.TempDir()
	k := mustKey(t, AlgSM2SM3)
	pemData, err := MarshalPKCS8PEM(k, nil)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, msgFile := filepath.Join(dir, "key.pem"), filepath.Join(dir, "msg")
	sigFile := filepath.Join(dir, "sig.der")
	tok, err := SignClaims(k, "JWT", map[string]string{"sub": "openssl"})
	if err != nil {
		t.Fatal(err)
	}
	dot := strings.LastIndexByte(tok, '.')
	must(t, os.WriteFile(keyFile, pemData, 0o600))
	must(t, os.WriteFile(msgFile, []byte(tok[:dot]), 0o600))
	sm2Args := []string{"-rawin", "-digest", "sm3", "-pkeyopt", "distid:" + DefaultUID}

	// ok/OpenSSL signs, we verify.
	cmd := exec.Command(bin, append([]string{"pkeyutl", "-sign", "-inkey", keyFile, "-in", msgFile, "-out", sigFile}, sm2Args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("openssl cannot sign with SM2 here (%v: %s): skipping", err, out)
	}
	der, err := os.ReadFile(sigFile)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := derToRS(der)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Verify(tok[:dot]+"."+b64.EncodeToString(rs), Keys{k}); err != nil {
		t.Fatalf("ok/openssl→ours: %v", err)
	}

	// ok/we sign, OpenSSL verifies; fail/OpenSSL rejects a tampered input.
	sig, err := b64.DecodeString(tok[dot+1:])
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(sigFile, rsToDER(sig[:32], sig[32:]), 0o600))
	verify := func() error {
		args := append([]string{"pkeyutl", "-verify", "-inkey", keyFile, "-in", msgFile, "-sigfile", sigFile}, sm2Args...)
		return exec.Command(bin, args...).Run()
	}
	if err := verify(); err != nil {
		t.Fatalf("ok/ours→openssl: %v", err)
	}
	must(t, os.WriteFile(msgFile, []byte(tok[:dot]+"x"), 0o600))
	if err := verify(); err == nil {
		t.Fatal("fail/openssl accepts a tampered input")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestInteropOpenSSLEncryptedPEM: OpenSSL 3 opens our PBES2/SM4-CBC/
// PBKDF2-HMAC-SM3 SM2 key file and derives the same public key.
func TestInteropOpenSSLEncryptedPEM(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed: skipping the OpenSSL cross-check")
	}
	k := mustKey(t, AlgSM2SM3)
	data, err := MarshalPKCS8PEM(k, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "enc.pem")
	must(t, os.WriteFile(f, data, 0o600))
	out, err := exec.Command(bin, "pkey", "-in", f, "-passin", "pass:pw", "-pubout", "-outform", "DER").Output()
	if err != nil {
		t.Skipf("openssl cannot read PBES2 with the hmacWithSM3 PRF here (OpenSSL 3.0 lacks it; %v): skipping", err)
	}
	x, y := make([]byte, 32), make([]byte, 32)
	pub := k.Public().(*ecdsa.PublicKey)
	pub.X.FillBytes(x)
	pub.Y.FillBytes(y)
	if !bytes.HasSuffix(out, append(append([]byte{4}, x...), y...)) {
		t.Fatalf("openssl derived another public key: %x", out)
	}
	if err := exec.Command(bin, "pkey", "-in", f, "-passin", "pass:wrong", "-noout").Run(); err == nil {
		t.Fatal("fail/openssl opened the key with a wrong password")
	}
}
