package wallet

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/essc-project/essc/signing"
)

// FuzzProof feeds arbitrary device-key proofs and bodies to the proof
// parser (peekHeader) and verifier (verifyProof). Neither panics; every
// refusal is ErrBadProof; and a proof is accepted only if the device key
// signed exactly that header and payload, for this method, URL and body,
// within the skew. The device key is fixed (testdata), so committed seeds
// stay valid.
func FuzzProof(f *testing.F) {
	pem, err := os.ReadFile("testdata/device-sm2.pem")
	if err != nil {
		f.Fatal(err)
	}
	key, err := signing.ParsePKCS8PEM(pem, nil)
	if err != nil {
		f.Fatal(err)
	}
	const url = "https://essc.test/wallet/v1/qr/scan"
	now := time.Unix(1780000000, 0)
	signed := map[string]bool{} // signing inputs the key produced
	add := func(method, u string, body []byte, at time.Time, embed bool, jti string) string {
		p, err := SignProofJTI(key, method, u, body, at, embed, jti)
		if err != nil {
			f.Fatal(err)
		}
		signed[p[:strings.LastIndexByte(p, '.')]] = true
		return p
	}
	body := []byte(`{"payload":"essc://login?v=1"}`)
	f.Add(add("POST", url, body, now, false, "jti-0123456789abcdef"), body)
	f.Add(add("POST", url, body, now.Add(30*time.Second), true, "jti-0123456789abcdeg"), body)
	f.Add(add("POST", url, body, now.Add(-2*time.Minute), false, "jti-0123456789abcdeh"), body)
	f.Add(add("GET", url, body, now, false, "jti-0123456789abcdei"), body)
	f.Add(add("POST", url+"/x", body, now, false, "jti-0123456789abcdej"), body)
	f.Add(add("POST", url, nil, now, false, "short"), []byte{})
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoiZXNzYy1wcm9vZitqd3QifQ.e30.", body)
	f.Add("a.b.c", []byte("{}"))
	f.Add(".", []byte(nil))
	f.Fuzz(func(t *testing.T, token string, body []byte) {
		if h, err := peekHeader(token); err == nil {
			if h.Typ != ProofType {
				t.Fatalf("peekHeader accepted typ %q", h.Typ)
			}
		} else if !errors.Is(err, ErrBadProof) {
			t.Fatalf("peekHeader error outside ErrBadProof: %v", err)
		}
		c, err := verifyProof(token, key, "POST", url, body, now, time.Minute)
		if err != nil {
			if !errors.Is(err, ErrBadProof) {
				t.Fatalf("verifyProof error outside ErrBadProof: %v", err)
			}
			return
		}
		if i := strings.LastIndexByte(token, '.'); i < 0 || !signed[token[:i]] {
			t.Fatalf("accepted a proof the device key did not sign: %q", token)
		}
		if c.HTM != "POST" || c.HTU != url || c.BH != BodyHash(body) || len(c.JTI) < 16 || len(c.JTI) > 64 ||
			now.Sub(time.Unix(c.IAT, 0)).Abs() > time.Minute {
			t.Fatalf("accepted a proof for another request: %+v (body %q)", c, body)
		}
	})
}
