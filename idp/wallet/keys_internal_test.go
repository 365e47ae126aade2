package wallet

import (
	"encoding/json"
	"testing"

	"github.com/essc-project/essc/signing"
)

// TestDeviceKeys: a stored JWK is parsed once and its key reused; another
// JWK gets its own key; an unreadable one is an error and is not kept; the
// cache stays bounded.
func TestDeviceKeys(t *testing.T) {
	jwk := func() []byte {
		k, err := signing.GenerateKey(signing.AlgSM2SM3)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(k.PublicJWK())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var c deviceKeys
	a, b := jwk(), jwk()
	ka, err := c.parse(a)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.parse(append([]byte(nil), a...)); again != ka {
		t.Fatal("the same stored JWK was parsed again")
	}
	if kb, _ := c.parse(b); kb == ka || kb.Thumbprint() == ka.Thumbprint() {
		t.Fatal("another JWK gave the first device's key")
	}
	if _, err := c.parse([]byte(`{"kty":"EC","crv":"SM2"}`)); err == nil {
		t.Fatal("an unreadable JWK parsed")
	}
	if len(c.m) != 2 {
		t.Fatalf("cache holds %d keys, want 2", len(c.m))
	}
	for i := range deviceKeysMax {
		c.m[string(rune(i))+"x"] = ka
	}
	if _, err := c.parse(jwk()); err != nil || len(c.m) > deviceKeysMax {
		t.Fatalf("cache grew to %d (max %d): %v", len(c.m), deviceKeysMax, err)
	}
}
