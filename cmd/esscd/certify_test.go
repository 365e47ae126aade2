package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/idp/wallet/client"
	"github.com/essc-project/essc/qrlogin"
)

// agency is a pension agency's token (scope essc.entitlement.manage).
func (s *stack) agency(t *testing.T) string {
	return s.serviceToken(t, "agency-1", "市社保局", "agency.example.gov.cn", entitlement.ScopeManage)
}

func apiJSON(t *testing.T, method, u, token, body string, out any) int {
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// TestCertificationPaths: an agency registers a pensioner; a PIN-only login
// never certifies; the app path (face, evidence bound to the proof) and the
// agency portal's QR login (purpose pension_certification, face) both do,
// through the wired server.
func TestCertificationPaths(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	s := newStack(t, "", "")
	ctx := context.Background()
	const prefix = "41010219520308202"
	number := s.issue(t, prefix, "P10000001")
	app := s.phone(t, prefix, number, "369258")
	token := s.agency(t)
	var v entitlement.View
	if code := apiJSON(t, "POST", s.base+"/entitlement/v1/beneficiaries", token,
		`{"ssn":"`+ssnFor(prefix)+`","benefit":"enterprise_pension","anchor":"2025-12-01"}`, &v); code != 201 || v.ID == "" {
		t.Fatalf("register: %d %+v", code, v)
	}
	status := func() entitlement.View {
		var got entitlement.View
		if code := apiJSON(t, "GET", s.base+"/entitlement/v1/beneficiaries/"+v.ID, token, "", &got); code != 200 {
			t.Fatalf("status %d", code)
		}
		return got
	}
	initial := status() // the anchor stands for the last certification before essc
	if initial.Method != "" {
		t.Fatalf("certified before any check: %+v", initial)
	}

	// A PIN-level login with the certification purpose does not certify.
	b := s.browser(t)
	b.authorize(url.Values{"purpose": {"pension_certification"}})
	sv, err := app.Scan(ctx, b.payload())
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Confirm(ctx, sv.Txn, b.number(), "369258"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.complete(); err != nil {
		t.Fatal(err)
	}
	if st := status(); st.Method != "" || !st.CertifiedAt.Equal(initial.CertifiedAt) {
		t.Fatalf("fail/a PIN login certified: %+v", st)
	}

	// App path with forged evidence, then with the development test key.
	ecardID := ecardOf(t, s, number)
	var e *client.Error
	if _, err := app.Certify(ctx, func(ch string) (string, error) {
		return wallet.SignDevLiveness(app.Key, ecardID, ch, time.Now())
	}); !errors.As(err, &e) || e.Code != "liveness_failed" {
		t.Fatalf("fail/forged evidence: %v", err)
	}
	if _, err := app.Certify(ctx, func(ch string) (string, error) {
		return wallet.SignDevLiveness(s.devKey, ecardID, ch, time.Now())
	}); err != nil {
		t.Fatalf("app certification: %v", err)
	}
	first := status()
	if !first.CertifiedAt.After(initial.CertifiedAt) || first.Method != entitlement.MethodApp || first.Status != "certified" {
		t.Fatalf("after app certification: %+v", first)
	}

	// Portal path: the agency portal's face-level QR login certifies again.
	b2 := s.browser(t)
	b2.authorize(url.Values{"purpose": {"pension_certification"}, "acr_values": {qrlogin.ACRFace}})
	sv2, err := app.Scan(ctx, b2.payload())
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := wallet.SignDevLiveness(s.devKey, ecardID, sv2.Txn, time.Now())
	if err := app.ConfirmFace(ctx, sv2.Txn, b2.number(), ev); err != nil {
		t.Fatal(err)
	}
	if _, err := b2.complete(); err != nil {
		t.Fatal(err)
	}
	if st := status(); st.Method != entitlement.MethodPortalQR || st.CertifiedAt.Before(first.CertifiedAt) {
		t.Fatalf("after portal certification: %+v", st)
	}
	// Family-assisted: a relative's app starts it, the holder's own liveness
	// completes it; without a registered authorisation it is refused.
	const relPrefix = "41010519800101301"
	relNumber := s.issue(t, relPrefix, "R20000001")
	relative := s.phone(t, relPrefix, relNumber, "258147")
	holderEvidence := func(ch string) (string, error) { return wallet.SignDevLiveness(s.devKey, ecardID, ch, time.Now()) }
	if _, err := relative.CertifyFamily(ctx, number, holderEvidence); !errors.As(err, &e) || e.Code != "no_authorisation" {
		t.Fatalf("fail/family without authorisation: %v", err)
	}
	if _, err := s.a.cards.Delegate(ctx, card.Actor{ID: "outlet-1"}, ssnFor(prefix), ssnFor(relPrefix),
		card.DelegationRequest{Kind: "agent", Evidence: "授权委托书 2026-0001"}); err != nil {
		t.Fatal(err)
	}
	if _, err := relative.CertifyFamily(ctx, number, holderEvidence); err != nil {
		t.Fatalf("family certification: %v", err)
	}
	if st := status(); st.Method != entitlement.MethodFamily || !st.Delegated {
		t.Fatalf("after family certification: %+v", st)
	}

	var att struct {
		Attestation string `json:"attestation"`
	}
	if code := apiJSON(t, "GET", s.base+"/entitlement/v1/beneficiaries/"+v.ID+"/attestation", token, "", &att); code != 200 || att.Attestation == "" {
		t.Fatalf("attestation: %d", code)
	}
}
