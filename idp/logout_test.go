package idp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/signing"
)

func TestEventNamesMatchCardDomain(t *testing.T) {
	if eventRevokeTokens != card.EventRevokeTokens || eventLogout != card.EventBackchannelLogout {
		t.Fatal("outbox event names drifted from idp/card")
	}
}

func TestBackchannelLogoutFromOutbox(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	verifier, ch := pkcePair()
	_, tok := e.gmToken(e.code("/gm", authorizeParams("rp-gm", gmCB, ch)), verifier, gmCB, "rp-gm")
	at := tok["access_token"].(string)
	keys := e.keys
	_, idPayload, err := signing.Verify(tok["id_token"].(string), keys)
	if err != nil {
		t.Fatal(err)
	}
	var idc map[string]any
	_ = json.Unmarshal(idPayload, &idc)

	e.events.add("card.lost", map[string]any{"holder_id": holderA}) // not ours: skipped
	e.events.add(eventLogout, map[string]any{"holder_id": holderA, "reason": "cancelled"})
	n, err := e.p.ConsumeEvents(ctx, 10)
	if err != nil || n != 2 {
		t.Fatalf("consume: %d %v", n, err)
	}
	if c, _ := e.events.Cursor(ctx, EventConsumer); c != 2 {
		t.Fatalf("cursor %d", c)
	}
	if n, _ := e.p.ConsumeEvents(ctx, 10); n != 0 {
		t.Fatalf("re-delivered %d events", n)
	}
	got := e.bcl.got("/bcl/rp-gm")
	if len(got) != 1 {
		t.Fatalf("logout tokens delivered: %d", len(got))
	}
	h, payload, err := signing.Verify(got[0], keys)
	if err != nil || h.Alg != signing.AlgSM2SM3 || h.Typ != "logout+jwt" {
		t.Fatalf("logout token: %v %+v", err, h)
	}
	var lc map[string]any
	_ = json.Unmarshal(payload, &lc)
	ev, _ := lc["events"].(map[string]any)
	if lc["iss"] != e.srv.URL+"/gm" || lc["aud"] != "rp-gm" || lc["sub"] != idc["sub"] || lc["sid"] != idc["sid"] ||
		ev[logoutEvent] == nil || lc["nonce"] != nil || lc["jti"] == nil || lc["iat"] == nil {
		t.Fatalf("logout claims %v (id token %v)", lc, idc)
	}
	if s := e.userinfoStatus("/gm", at); s != http.StatusUnauthorized {
		t.Fatalf("token after back-channel logout: %d", s)
	}
}

// TestConsumeEventsCursorWrites: the cursor is written after each handled
// event and after the batch's last, not after every skipped event; a
// failed write leaves it after the last handled event, so only skipped
// events are read again.
func TestConsumeEventsCursorWrites(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for range 3 {
		e.events.add("card.issued", map[string]any{"holder_id": holderA})
	}
	e.events.add(eventLogout, map[string]any{"holder_id": holderA, "reason": "cancelled"}) // seq 4
	e.events.add("card.lost", map[string]any{"holder_id": holderA})
	e.events.add("ecard.applied", map[string]any{"holder_id": holderA}) // seq 6
	if n, err := e.p.ConsumeEvents(ctx, 10); err != nil || n != 6 {
		t.Fatalf("consume: %d %v", n, err)
	}
	if c, _ := e.events.Cursor(ctx, EventConsumer); c != 6 || e.events.advances != 2 {
		t.Fatalf("cursor %d after %d writes, want 6 after 2", c, e.events.advances)
	}

	e.events.add(eventRevokeTokens, map[string]any{"holder_id": holderA, "ecard_id": "ecard-other"}) // seq 7
	e.events.add("card.issued", map[string]any{"holder_id": holderA})
	e.events.add("card.issued", map[string]any{"holder_id": holderA}) // seq 9
	e.events.failOn = e.events.advances + 2                           // the end-of-batch write fails
	if _, err := e.p.ConsumeEvents(ctx, 10); err == nil {
		t.Fatal("consume with a failing cursor write: no error")
	}
	if c, _ := e.events.Cursor(ctx, EventConsumer); c != 7 {
		t.Fatalf("cursor %d after a failed write, want 7 (the handled event)", c)
	}
	if n, err := e.p.ConsumeEvents(ctx, 10); err != nil || n != 2 {
		t.Fatalf("re-read after the failed write: %d %v, want the 2 skipped events", n, err)
	}
	if c, _ := e.events.Cursor(ctx, EventConsumer); c != 9 {
		t.Fatalf("cursor %d, want 9", c)
	}
}

func TestRevokeTokensEvent(t *testing.T) {
	e := newEnv(t)
	verifier, ch := pkcePair()
	_, tok := e.gmToken(e.code("/gm", authorizeParams("rp-gm", gmCB, ch)), verifier, gmCB, "rp-gm")
	// An event for another e-card of the holder leaves the token alone (the
	// holder index is filtered by the e-card it was signed in with).
	e.events.add(eventRevokeTokens, map[string]any{"holder_id": holderA, "ecard_id": "ecard-other"})
	if _, err := e.p.ConsumeEvents(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	if s := e.userinfoStatus("/gm", tok["access_token"].(string)); s != http.StatusOK {
		t.Fatalf("userinfo after tokens.revoke of another e-card: %d", s)
	}
	e.events.add(eventRevokeTokens, map[string]any{"holder_id": holderA, "ecard_id": ecardA})
	if _, err := e.p.ConsumeEvents(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	// The registry still says active: only the revocation can explain a 401.
	if s := e.userinfoStatus("/gm", tok["access_token"].(string)); s != http.StatusUnauthorized {
		t.Fatalf("userinfo after tokens.revoke: %d", s)
	}
}

func TestRPInitiatedLogout(t *testing.T) {
	e := newEnv(t)
	verifier, ch := pkcePair()
	code := e.code("", authorizeParams("rp-intl", rpCB, ch))
	_, tok := e.post("/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {rpCB},
		"code_verifier": {verifier}}, []string{"rp-intl", e.secret})
	idt, at := tok["id_token"].(string), tok["access_token"].(string)
	t.Run("fail/unregistered post_logout_redirect_uri", func(t *testing.T) {
		resp := e.browse("/oauth2/logout", url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {"https://evil.example/"}})
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("fail/redirect without id_token_hint or client", func(t *testing.T) {
		resp := e.browse("/oauth2/logout", url.Values{"post_logout_redirect_uri": {"https://rp.example.com/bye"}})
		if resp.Header.Get("Location") != "" {
			t.Fatalf("redirected without a client: %q", resp.Header.Get("Location"))
		}
	})
	t.Run("fail/gm id token on intl", func(t *testing.T) {
		resp := e.browse("/oauth2/logout", url.Values{"id_token_hint": {"eyJhbGciOiJTTTJTTTMifQ.e30.AAAA"}})
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%d", resp.StatusCode)
		}
	})
	t.Run("ok/logout revokes and redirects", func(t *testing.T) {
		resp := e.browse("/oauth2/logout", url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {"https://rp.example.com/bye"}, "state": {"st-1"}})
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "https://rp.example.com/bye?state=st-1") {
			t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if s := e.userinfoStatus("", at); s != http.StatusUnauthorized {
			t.Fatalf("token after logout: %d", s)
		}
	})
}
