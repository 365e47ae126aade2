package wallet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
	"github.com/essc-project/essc/storage/memory"
)

// fakeCards is a tiny card domain: one card, PIN 258147.
type fakeCards struct {
	mu       sync.Mutex
	verified int
	lost     bool
}

func (f *fakeCards) ApplyECard(_ context.Context, _ card.Actor, r card.ApplyRequest) (card.Grant, error) {
	if r.PIN != "258147" {
		return card.Grant{}, card.ErrAuthFailed
	}
	return card.Grant{ECard: storage.ECard{ID: "e1", Level: 1}, Device: storage.Device{ID: "d1"}}, nil
}
func (f *fakeCards) ChangePIN(context.Context, card.Actor, string, string, string) error { return nil }
func (f *fakeCards) VerifyPIN(_ context.Context, _ string, pin string) (card.Verified, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.verified++
	if pin != "258147" {
		return card.Verified{}, card.ErrAuthFailed
	}
	return card.Verified{}, nil
}
func (f *fakeCards) CheckPIN(ctx context.Context, c storage.Card, pin string) error {
	_, err := f.VerifyPIN(ctx, c.Number, pin)
	return err
}
func (f *fakeCards) ReportLossByHolder(context.Context, card.Actor, string, string) (storage.Card, error) {
	f.mu.Lock()
	f.lost = true
	f.mu.Unlock()
	return storage.Card{}, nil
}

func (f *fakeCards) BindDevice(context.Context, card.Actor, string, card.DeviceKey) (storage.Device, error) {
	return storage.Device{ID: "d2"}, nil
}
func (f *fakeCards) UnbindDevice(_ context.Context, _ card.Actor, id string) error {
	if id != "d1" {
		return card.ErrNotFound
	}
	return nil
}

// fakeQR records confirmations and scans; like qrlogin.Service, a scan
// re-checks the holder (and would deny the transaction) when hold says so.
type fakeQR struct {
	confirms, scans int
	hold            *holders
}

func (q *fakeQR) Scan(ctx context.Context, dev qrlogin.Device, payload string) (qrlogin.ScanView, error) {
	if _, err := qrlogin.ParsePayload(payload); err != nil {
		return qrlogin.ScanView{}, err
	}
	q.scans++
	if q.hold != nil {
		if err := q.hold.CheckHolder(ctx, dev.HolderID, dev.ECardID); err != nil {
			return qrlogin.ScanView{}, err
		}
	}
	return qrlogin.ScanView{Txn: "t"}, nil
}
func (q *fakeQR) ResolveCode(context.Context, qrlogin.Device, string) (string, error) {
	return "", qrlogin.ErrBadCode
}
func (q *fakeQR) Confirm(context.Context, qrlogin.Device, string, int, qrlogin.Approval) error {
	q.confirms++
	return nil
}
func (q *fakeQR) Deny(context.Context, qrlogin.Device, string) error { return nil }

// registry knows one device bound to e-card e1 (unless revoked).
type registry struct {
	dev       storage.Device
	revoked   bool
	suspended bool // the e-card reads as suspended (reported lost)
}

func (r *registry) DeviceByThumbprint(_ context.Context, th string) (storage.Device, error) {
	if r.revoked || th != r.dev.Thumbprint {
		return storage.Device{}, storage.ErrNotFound
	}
	return r.dev, nil
}
func (r *registry) DeviceWithCard(ctx context.Context, th string) (storage.Device, storage.ECard, storage.Card, error) {
	d, err := r.DeviceByThumbprint(ctx, th)
	if err != nil {
		return d, storage.ECard{}, storage.Card{}, err
	}
	e, c, err := r.ECardWithCard(ctx, d.ECardID)
	return d, e, c, err
}
func (r *registry) ECard(context.Context, string) (storage.ECard, error) {
	st := storage.ECardActive
	if r.suspended {
		st = storage.ECardSuspended
	}
	return storage.ECard{ID: "e1", HolderID: "h1", CardID: "c1", Status: st, Level: 1}, nil
}
func (r *registry) Card(context.Context, string) (storage.Card, error) {
	return storage.Card{ID: "c1", HolderID: "h1", Number: "A12345678", Status: storage.CardActive, Region: "410105"}, nil
}
func (r *registry) ECardWithCard(ctx context.Context, id string) (storage.ECard, storage.Card, error) {
	e, _ := r.ECard(ctx, id)
	c, _ := r.Card(ctx, e.CardID)
	return e, c, nil
}
func (r *registry) LiveECardOfCard(context.Context, string) (storage.ECard, error) {
	return storage.ECard{ID: "e1", HolderID: "h1", CardID: "c1", Status: storage.ECardActive}, nil
}
func (r *registry) CardByNumber(context.Context, string) (storage.Card, error) {
	return storage.Card{ID: "c1", Number: "A12345678", Status: storage.CardActive}, nil
}
func (r *registry) Holder(context.Context, string) (storage.Holder, error) {
	return storage.Holder{ID: "h1", Name: "李明", SSNMasked: "4101**********2015"}, nil
}

type holders struct{ inactive bool }

func (h *holders) CheckHolder(context.Context, string, string) error {
	if h.inactive {
		return qrlogin.ErrHolderInactive
	}
	return nil
}

type keys struct{ k *signing.Key }

func (k keys) Active(string) (*signing.Key, error) { return k.k, nil }

type env struct {
	srv   *httptest.Server
	dev   *signing.Key
	reg   *registry
	hold  *holders
	cards *fakeCards
	qr    *fakeQR
}

func newEnv(t testing.TB, anonPerIP ...int) *env {
	store, err := memory.New(memory.Config{
		Lookup:     func(context.Context, string) (fosite.Client, error) { return nil, storage.ErrNotFound },
		NewSession: func() fosite.Session { return &openid.DefaultSession{} }})
	if err != nil {
		t.Fatal(err)
	}
	dev, _ := signing.GenerateKey(signing.AlgSM2SM3)
	jwk, _ := json.Marshal(dev.PublicJWK())
	issuerKey, _ := signing.GenerateKey(signing.AlgSM2SM3)
	e := &env{dev: dev, reg: &registry{dev: storage.Device{ID: "d1", ECardID: "e1", Thumbprint: dev.Thumbprint(), PublicKeyJWK: jwk}},
		hold: &holders{}, cards: &fakeCards{}}
	e.qr = &fakeQR{hold: e.hold}
	mux := http.NewServeMux()
	e.srv = httptest.NewUnstartedServer(mux)
	base := "http://" + e.srv.Listener.Addr().String()
	h, err := wallet.New(wallet.Config{BaseURL: base, Issuer: base + "/gm", Cards: e.cards, QR: e.qr, Registry: e.reg,
		Store: store, Keys: keys{issuerKey}, MaxBody: 4096, AnonymousPerIP: append(anonPerIP, 1000)[0]})
	if err != nil {
		t.Fatal(err)
	}
	h.Mount(mux)
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

// send posts body to path with a proof built by mk (nil: a correct one).
func (e *env) send(t *testing.T, path, body string, proof string) (int, string) {
	req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(body))
	if proof != "" {
		req.Header.Set(wallet.ProofHeader, proof)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b struct{ Error string }
	json.NewDecoder(resp.Body).Decode(&b)
	return resp.StatusCode, b.Error
}

func (e *env) proof(t *testing.T, path, body string, at time.Time, embed bool) string {
	p, err := wallet.SignProof(e.dev, "POST", e.srv.URL+path, []byte(body), at, embed)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const scanBody = `{"payload":"essc://login?v=1&t=AAAAAAAAAAAAAAAAAAAAAA&e=0&c=AAAAAAAAAAAAAAAAAAAAAA"}`

func TestProofs(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	good := e.proof(t, "/wallet/v1/qr/scan", scanBody, now, false)
	if code, errc := e.send(t, "/wallet/v1/qr/scan", scanBody, good); code != 200 {
		t.Fatalf("ok/scan: %d %s", code, errc)
	}
	other, _ := signing.GenerateKey(signing.AlgSM2SM3)
	otherProof, _ := wallet.SignProof(other, "POST", e.srv.URL+"/wallet/v1/qr/scan", []byte(scanBody), now, false)
	es256, _ := signing.GenerateKey(signing.AlgES256)
	esProof, _ := wallet.SignProof(es256, "POST", e.srv.URL+"/wallet/v1/qr/scan", []byte(scanBody), now, false)
	tests := map[string]struct {
		path, body, proof string
		code              int
		err               string
	}{
		"fail/replayed-proof":   {"/wallet/v1/qr/scan", scanBody, good, 401, "invalid_proof"},
		"fail/missing-proof":    {"/wallet/v1/qr/scan", scanBody, "", 401, "invalid_proof"},
		"fail/garbage-proof":    {"/wallet/v1/qr/scan", scanBody, "a.b.c", 401, "invalid_proof"},
		"fail/other-url":        {"/wallet/v1/qr/deny", `{"txn":"t"}`, e.proof(t, "/wallet/v1/qr/scan", `{"txn":"t"}`, now, false), 401, "invalid_proof"},
		"fail/other-body":       {"/wallet/v1/qr/scan", scanBody, e.proof(t, "/wallet/v1/qr/scan", `{"payload":"x"}`, now, false), 401, "invalid_proof"},
		"fail/iat-past":         {"/wallet/v1/qr/scan", scanBody, e.proof(t, "/wallet/v1/qr/scan", scanBody, now.Add(-2*time.Minute), false), 401, "invalid_proof"},
		"fail/iat-future":       {"/wallet/v1/qr/scan", scanBody, e.proof(t, "/wallet/v1/qr/scan", scanBody, now.Add(2*time.Minute), false), 401, "invalid_proof"},
		"fail/unbound-device":   {"/wallet/v1/qr/scan", scanBody, otherProof, 401, "invalid_proof"},
		"fail/es256-device-key": {"/wallet/v1/qr/scan", scanBody, esProof, 401, "invalid_proof"},
		"fail/jwk-on-bound-ep":  {"/wallet/v1/ecards", `{}`, e.proof(t, "/wallet/v1/ecards", `{}`, now, false), 401, "invalid_proof"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if code, errc := e.send(t, tc.path, tc.body, tc.proof); code != tc.code || errc != tc.err {
				t.Fatalf("got %d %s, want %d %s", code, errc, tc.code, tc.err)
			}
		})
	}
}

func TestBodies(t *testing.T) {
	e := newEnv(t)
	big := `{"payload":"` + strings.Repeat("x", 5000) + `"}`
	tests := map[string]struct {
		path, body string
		embed      bool
		code       int
		err        string
	}{
		"ok/apply":                {"/wallet/v1/ecards", `{"card_number":"A12345678","ssn":"x","name":"李明","pin":"258147"}`, true, 201, ""},
		"fail/apply-wrong-pin":    {"/wallet/v1/ecards", `{"card_number":"A12345678","ssn":"x","name":"李明","pin":"000000"}`, true, 401, "auth_failed"},
		"fail/unknown-field":      {"/wallet/v1/qr/scan", `{"payload":"x","extra":1}`, false, 400, "invalid_request"},
		"fail/trailing-data":      {"/wallet/v1/qr/scan", scanBody + `{}`, false, 400, "invalid_request"},
		"fail/not-json":           {"/wallet/v1/qr/scan", `payload=x`, false, 400, "invalid_request"},
		"fail/oversize":           {"/wallet/v1/qr/scan", big, false, 413, "invalid_request"},
		"fail/payload-and-code":   {"/wallet/v1/qr/scan", `{"payload":"x","code":"ABCDEFGH"}`, false, 400, "invalid_request"},
		"fail/bad-payload":        {"/wallet/v1/qr/scan", `{"payload":"https://evil.example/login"}`, false, 400, "qr_invalid"},
		"fail/confirm-no-factor":  {"/wallet/v1/qr/confirm", `{"txn":"t","number":12}`, false, 400, "invalid_request"},
		"fail/confirm-both":       {"/wallet/v1/qr/confirm", `{"txn":"t","number":12,"pin":"258147","liveness":"x"}`, false, 400, "invalid_request"},
		"fail/confirm-wrong-pin":  {"/wallet/v1/qr/confirm", `{"txn":"t","number":12,"pin":"111111"}`, false, 401, "auth_failed"},
		"fail/face-no-verifier":   {"/wallet/v1/qr/confirm", `{"txn":"t","number":12,"liveness":"x"}`, false, 403, "face_required"},
		"ok/confirm":              {"/wallet/v1/qr/confirm", `{"txn":"t","number":12,"pin":"258147"}`, false, 200, ""},
		"fail/report-loss-body":   {"/wallet/v1/report-loss", `{"x":1}`, false, 400, "invalid_request"},
		"ok/presentation-code":    {"/wallet/v1/presentation-codes", `{}`, false, 201, ""},
		"fail/deny-unknown-field": {"/wallet/v1/qr/deny", `{"txn":"t","why":"x"}`, false, 400, "invalid_request"},
		"ok/bind-device":          {"/wallet/v1/devices", `{"card_number":"A12345678","pin":"258147"}`, true, 201, ""},
		"fail/bind-wrong-pin":     {"/wallet/v1/devices", `{"card_number":"A12345678","pin":"000000"}`, true, 401, "auth_failed"},
		"fail/bind-without-jwk":   {"/wallet/v1/devices", `{"card_number":"A12345678","pin":"258147"}`, false, 401, "invalid_proof"},
		"ok/unbind":               {"/wallet/v1/devices/unbind", `{"device_id":"d1"}`, false, 200, ""},
		"fail/unbind-unknown":     {"/wallet/v1/devices/unbind", `{"device_id":"zz"}`, false, 404, "not_found"},
		"fail/unbind-no-id":       {"/wallet/v1/devices/unbind", `{}`, false, 400, "invalid_request"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := e.proof(t, tc.path, tc.body, time.Now(), tc.embed)
			if code, errc := e.send(t, tc.path, tc.body, p); code != tc.code || errc != tc.err {
				t.Fatalf("got %d %q, want %d %q", code, errc, tc.code, tc.err)
			}
		})
	}
	t.Run("fail/card-inactive-live", func(t *testing.T) {
		e.reg.suspended, e.hold.inactive = true, true // the registry and the QR layer's check agree
		defer func() { e.reg.suspended, e.hold.inactive = false, false }()
		// A scan reaches the QR layer (which denies the transaction with
		// card_invalid for the browser); the app gets card_inactive.
		scans := e.qr.scans
		p := e.proof(t, "/wallet/v1/qr/scan", scanBody, time.Now(), false)
		if code, errc := e.send(t, "/wallet/v1/qr/scan", scanBody, p); code != 403 || errc != "card_inactive" || e.qr.scans != scans+1 {
			t.Fatalf("got %d %s, scans %d", code, errc, e.qr.scans-scans)
		}
		// Every other device request is refused before it does anything.
		confirms := e.qr.confirms
		const confirmBody = `{"txn":"t","number":12,"pin":"258147"}`
		p = e.proof(t, "/wallet/v1/qr/confirm", confirmBody, time.Now(), false)
		if code, errc := e.send(t, "/wallet/v1/qr/confirm", confirmBody, p); code != 403 || errc != "card_inactive" || e.qr.confirms != confirms {
			t.Fatalf("confirm: got %d %s", code, errc)
		}
	})
	t.Run("fail/revoked-device-live", func(t *testing.T) {
		e.reg.revoked = true
		defer func() { e.reg.revoked = false }()
		p := e.proof(t, "/wallet/v1/qr/scan", scanBody, time.Now(), false)
		if code, errc := e.send(t, "/wallet/v1/qr/scan", scanBody, p); code != 401 || errc != "invalid_proof" {
			t.Fatalf("got %d %s", code, errc)
		}
	})
	if e.qr.confirms != 1 {
		t.Fatalf("QR confirmations %d, want exactly the one ok/confirm", e.qr.confirms)
	}
}

// TestPINSprayThrottled: one source trying PINs on many cards through the
// knowledge-factor endpoints is cut off after the per-IP budget.
func TestPINSprayThrottled(t *testing.T) {
	e := newEnv(t, 5)
	codes := map[int]int{}
	for i := range 8 {
		body := `{"card_number":"A1234567` + string(rune('0'+i)) + `","old_pin":"123456","new_pin":"258147"}`
		code, _ := e.send(t, "/wallet/v1/pin", body, e.proof(t, "/wallet/v1/pin", body, time.Now(), true))
		codes[code]++
	}
	if codes[429] != 3 || codes[204] != 5 {
		t.Fatalf("responses %v, want 5 served then 3 × 429", codes)
	}
}

func TestDevLiveness(t *testing.T) {
	k, _ := signing.GenerateKey(signing.AlgSM2SM3)
	pub, _ := signing.NewPublicKey(k.Alg(), k.Public())
	v := wallet.DevLiveness{Key: pub}
	now := time.Now()
	ev, _ := wallet.SignDevLiveness(k, "e1", "txn", now)
	if err := v.VerifyLiveness(context.Background(), "e1", "txn", ev); err != nil {
		t.Fatalf("ok/live: %v", err)
	}
	other, _ := signing.GenerateKey(signing.AlgSM2SM3)
	forged, _ := wallet.SignDevLiveness(other, "e1", "txn", now)
	old, _ := wallet.SignDevLiveness(k, "e1", "txn", now.Add(-10*time.Minute))
	for name, c := range map[string][3]string{
		"fail/other-key":       {"e1", "txn", forged},
		"fail/other-ecard":     {"e2", "txn", ev},
		"fail/other-challenge": {"e1", "txn2", ev},
		"fail/expired":         {"e1", "txn", old},
		"fail/garbage":         {"e1", "txn", "x.y.z"},
	} {
		if err := v.VerifyLiveness(context.Background(), c[0], c[1], c[2]); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if err := (wallet.DevLiveness{}).VerifyLiveness(context.Background(), "e1", "txn", ev); err == nil {
		t.Error("fail/no-key accepted")
	}
}

// FuzzWalletRequest sends arbitrary bodies with valid proofs and arbitrary
// proofs: the handler must answer with a fixed error body, never 5xx.
func FuzzWalletRequest(f *testing.F) {
	f.Add("/wallet/v1/qr/scan", scanBody, "")
	f.Add("/wallet/v1/qr/confirm", `{"txn":"t","number":12,"pin":"258147"}`, "")
	f.Add("/wallet/v1/ecards", `{"card_number":"A"}`, "eyJhbGciOiJub25lIn0.e30.")
	f.Add("/wallet/v1/qr/deny", `{"txn":1}`, "x")
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, path, body, proof string) {
		switch path {
		case "/wallet/v1/qr/scan", "/wallet/v1/qr/confirm", "/wallet/v1/qr/deny", "/wallet/v1/ecards", "/wallet/v1/pin",
			"/wallet/v1/report-loss", "/wallet/v1/presentation-codes":
		default:
			return
		}
		if proof == "" {
			p, err := wallet.SignProof(e.dev, "POST", e.srv.URL+path, []byte(body), time.Now(), path == "/wallet/v1/ecards" || path == "/wallet/v1/pin")
			if err != nil {
				t.Fatal(err)
			}
			proof = p
		}
		req, _ := http.NewRequest("POST", e.srv.URL+path, bytes.NewReader([]byte(body)))
		req.Header.Set(wallet.ProofHeader, strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, proof))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		var b struct{ Error string }
		if resp.StatusCode >= 500 {
			t.Fatalf("%s → %d", path, resp.StatusCode)
		}
		if resp.StatusCode >= 400 && (json.NewDecoder(resp.Body).Decode(&b) != nil || b.Error == "") {
			t.Fatalf("%s → %d without a fixed error body", path, resp.StatusCode)
		}
	})
}
