package wallet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
	"github.com/essc-project/essc/storage/memory"
)

func fuzzStore(t testing.TB) *memory.Store {
	store, err := memory.New(memory.Config{
		Lookup:     func(context.Context, string) (fosite.Client, error) { return nil, storage.ErrNotFound },
		NewSession: func() fosite.Session { return &openid.DefaultSession{} }})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// counterAuth: bearer "counter" has essc.verify, "rp" only openid.
type counterAuth struct{}

func (counterAuth) Authenticate(r *http.Request) (string, []string, error) {
	switch r.Header.Get("Authorization") {
	case "Bearer counter":
		return "counter-1", []string{wallet.ScopeVerify}, nil
	case "Bearer rp":
		return "rp", []string{"openid"}, nil
	}
	return "", nil, errors.New("no valid bearer token")
}

// FuzzVerifyRequest feeds arbitrary Authorization headers and bodies to
// POST /verify/v1/presentation-codes: never a 5xx, every refusal a JSON
// error, and an identity only for the counter's token and the one issued
// code — once.
func FuzzVerifyRequest(f *testing.F) {
	const code = "0123456789abcdef0123456789abcdef"
	f.Add("Bearer counter", `{"code":"`+code+`"}`)
	f.Add("Bearer counter", `{"code":"`+code+`","x":1}`)
	f.Add("Bearer counter", `{"Code":"`+code+`"} `)
	f.Add("Bearer counter", `{"code":"`+code+`"}{}`)
	f.Add("Bearer rp", `{"code":"`+code+`"}`)
	f.Add("", `{"code":"`+strings.Repeat("0", 32)+`"}`)
	f.Add("Bearer counter", `{"code":1}`)
	f.Add("Bearer counter", strings.Repeat(" ", 1100))
	store := fuzzStore(f)
	v, err := wallet.NewVerifier(wallet.VerifierConfig{Auth: counterAuth{}, Store: store,
		Registry: &registry{}})
	if err != nil {
		f.Fatal(err)
	}
	mux := http.NewServeMux()
	v.Mount(mux)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, auth, body string) {
		if err := store.PutOnce(ctx, "presentation", code, []byte(`{"h":"h1","e":"e1"}`), time.Minute); err != nil && !errors.Is(err, storage.ErrDuplicate) {
			t.Fatal(err)
		}
		send := func() (int, map[string]any) {
			req := httptest.NewRequest(http.MethodPost, "/verify/v1/presentation-codes", strings.NewReader(body))
			req.Header["Authorization"] = []string{auth}
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, req)
			var out map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatalf("%d: not JSON: %q", w.Code, w.Body)
			}
			return w.Code, out
		}
		status, out := send()
		switch {
		case status >= 500:
			t.Fatalf("%q %q → %d %v", auth, body, status, out)
		case status >= 400:
			if e, _ := out["error"].(string); e == "" {
				t.Fatalf("%d without an error code: %v", status, out)
			}
			return
		case status != http.StatusOK:
			t.Fatalf("unexpected %d", status)
		}
		var req struct {
			Code string `json:"code"`
		}
		dec := json.NewDecoder(strings.NewReader(body))
		dec.DisallowUnknownFields()
		if auth != "Bearer counter" || dec.Decode(&req) != nil || dec.More() || req.Code != code {
			t.Fatalf("identity answered for %q %q: %v", auth, body, out)
		}
		if out["name"] != "李明" {
			t.Fatalf("identity %v", out)
		}
		if again, _ := send(); again != http.StatusNotFound {
			t.Fatalf("the code redeemed twice: %d", again)
		}
	})
}

// fuzzNotices knows one sign-in, s1.
type fuzzNotices struct{}

func (fuzzNotices) SignIns(context.Context, string) ([]wallet.Notice, error) {
	return []wallet.Notice{{SID: "s1", ClientID: "portal", RPName: "门户", At: time.Unix(1780000000, 0)}}, nil
}
func (fuzzNotices) NotMe(_ context.Context, _, sid string) error {
	if sid != "s1" {
		return storage.ErrNotFound
	}
	return nil
}

// fuzzCertifier certifies only the evidence "ok".
type fuzzCertifier struct{}

func (fuzzCertifier) Certify(_ context.Context, in entitlement.CertifyInput) ([]entitlement.Certification, error) {
	if in.LivenessEvidence != "ok" {
		return nil, entitlement.ErrLiveness
	}
	return []entitlement.Certification{{Benefit: "enterprise_pension", AgencyID: "agency-1"}}, nil
}

// walletBodyFields are the fields each endpoint's body may carry (JSON
// field names match case-insensitively).
var walletBodyFields = map[string][]string{
	"/wallet/v1/devices":            {"card_number", "pin", "channel"},
	"/wallet/v1/devices/unbind":     {"device_id"},
	"/wallet/v1/notices/not-me":     {"sid"},
	"/wallet/v1/certify":            {"liveness"},
	"/wallet/v1/certify/family":     {"card_number", "liveness"},
	"/wallet/v1/qr/scan":            {"payload", "code"},
	"/wallet/v1/qr/deny":            {"txn"},
	"/wallet/v1/notices":            nil, // no body is read
	"/wallet/v1/presentation-codes": nil,
}

// FuzzWalletBodies sends arbitrary JSON bodies, with a correct device
// proof, to the wallet endpoints FuzzWalletRequest does not reach (device
// binding and unbinding, sign-in notices, "not me", certification for
// oneself and a relative) and to scan and deny: never a 5xx, every refusal
// a JSON error, and a 2xx only for one JSON object with known fields.
func FuzzWalletBodies(f *testing.F) {
	f.Add("/wallet/v1/devices", `{"card_number":"A12345678","pin":"258147","channel":"ecard-app"}`)
	f.Add("/wallet/v1/devices", `{"card_number":"A12345678","pin":"258147","extra":true}`)
	f.Add("/wallet/v1/devices/unbind", `{"device_id":"d1"}`)
	f.Add("/wallet/v1/devices/unbind", `{"device_id":""}`)
	f.Add("/wallet/v1/notices", `{}`)
	f.Add("/wallet/v1/notices/not-me", `{"sid":"s1"}`)
	f.Add("/wallet/v1/notices/not-me", `{"sid":"`+strings.Repeat("s", 200)+`"}`)
	f.Add("/wallet/v1/certify", `{"liveness":"ok"}`)
	f.Add("/wallet/v1/certify", `{"liveness":null}`)
	f.Add("/wallet/v1/certify/family", `{"card_number":"A12345678","liveness":"ok"}`)
	f.Add("/wallet/v1/qr/scan", `{"code":"ABCD2345"}`)
	f.Add("/wallet/v1/qr/deny", `{"txn":"t"} {"txn":"u"}`)
	dev, _ := signing.GenerateKey(signing.AlgSM2SM3)
	jwk, _ := json.Marshal(dev.PublicJWK())
	issuerKey, _ := signing.GenerateKey(signing.AlgSM2SM3)
	const base = "https://essc.test"
	h, err := wallet.New(wallet.Config{BaseURL: base, Issuer: base + "/gm", Cards: &fakeCards{}, QR: &fakeQR{},
		Registry: &registry{dev: storage.Device{ID: "d1", ECardID: "e1", Thumbprint: dev.Thumbprint(), PublicKeyJWK: jwk}},
		Notices:  fuzzNotices{}, Certifier: fuzzCertifier{}, Store: fuzzStore(f), Keys: keys{issuerKey},
		MaxBody: 4096, AnonymousPerIP: 1 << 30})
	if err != nil {
		f.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	f.Fuzz(func(t *testing.T, path, body string) {
		known, ok := walletBodyFields[path]
		if !ok {
			return
		}
		proof, err := wallet.SignProof(dev, http.MethodPost, base+path, []byte(body), time.Now(), path == "/wallet/v1/devices")
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		req.Header.Set(wallet.ProofHeader, proof)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %q → %d: not a JSON object: %q", path, body, w.Code, w.Body)
		}
		switch {
		case w.Code >= 500:
			t.Fatalf("%s %q → %d %v", path, body, w.Code, out)
		case w.Code >= 400:
			if e, _ := out["error"].(string); e == "" {
				t.Fatalf("%s → %d without an error code: %v", path, w.Code, out)
			}
			return
		}
		if known == nil {
			return
		}
		var m map[string]json.RawMessage
		dec := json.NewDecoder(bytes.NewReader([]byte(body)))
		if dec.Decode(&m) != nil || dec.More() {
			t.Fatalf("%s accepted a body that is not one JSON object: %q", path, body)
		}
		for k := range m {
			if !slices.ContainsFunc(known, func(f string) bool { return strings.EqualFold(f, k) }) {
				t.Fatalf("%s accepted unknown field %q", path, k)
			}
		}
	})
}
