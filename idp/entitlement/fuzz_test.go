package entitlement_test

import (
	"testing"
	"time"

	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/signing"
)

// FuzzVerify feeds arbitrary attestations and webhook signatures to the
// verifiers: they must never panic and must only accept what the key signed.
func FuzzVerify(f *testing.F) {
	key, err := signing.GenerateKey(signing.AlgSM2SM3)
	if err != nil {
		f.Fatal(err)
	}
	keys := signing.Keys{key}
	now := time.Unix(1700000000, 0)
	good, _ := signing.SignClaims(key, entitlement.AttestationType, entitlement.AttestationClaims{Iss: "i", Sub: "s", Aud: "a",
		JTI: "j", Benefit: "enterprise_pension", CertifiedAt: 1, ValidUntil: now.Unix() + 60, Exp: now.Unix() + 60, Method: "app"})
	body := []byte(`{"id":"evt_1"}`)
	sig, _ := entitlement.SignWebhook(key, body)
	f.Add(good, body, sig)
	f.Add("a.b.c", []byte("{}"), "a..c")
	f.Add(good+"x", body, sig+"x")
	f.Add("", []byte(nil), "..")
	f.Fuzz(func(t *testing.T, tok string, body []byte, sig string) {
		if c, err := entitlement.VerifyAttestation(tok, keys, "", now); err == nil && tok != good {
			t.Fatalf("accepted a token the key did not sign: %q %+v", tok, c)
		}
		if err := entitlement.VerifyWebhook(body, sig, keys); err == nil {
			// Only the exact signed body verifies (the signature itself may
			// be re-encoded only if the JWS is identical).
			if string(body) != `{"id":"evt_1"}` {
				t.Fatalf("webhook signature accepted for another body %q", body)
			}
		}
	})
}
