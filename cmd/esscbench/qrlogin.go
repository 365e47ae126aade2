package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/idp/wallet/client"
	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/signing"
)

// benchPIN is every bench holder's PIN after the initial-PIN change.
const benchPIN = "258147"

// phone is a simulated e-card app: its own card and SM2 device key.
type phone struct {
	app    *client.Client
	number string
}

// walletErr converts a wallet API error to a counted kind.
func walletErr(err error) error {
	var we *client.Error
	if errors.As(err, &we) {
		return failf("wallet_"+we.Code, "%d %s", we.Status, we.Message)
	}
	return err
}

// newPhone issues a card through the admin API and applies for its e-card
// from a new device key, changing the initial PIN first (DESIGN.md §6).
func (e *env) newPhone(ctx context.Context) (*phone, error) {
	i := e.seq.Add(1)
	// Card numbers are 9 characters: "Z", 2 run characters, 6 sequence digits.
	number := fmt.Sprintf("Z%s%06d", strings.ToUpper(e.run[:2]), i%1000000)
	ssn := benchSSN(int(e.run[0])*31+int(e.run[1]), 500000+int(i))
	const name = "压测用户"
	if err := apiJSON(ctx, e.http, http.MethodPost, e.base+"/admin/v1/cards", e.admin,
		map[string]string{"ssn": ssn, "name": name, "number": number, "region": "410102"}, http.StatusCreated, nil); err != nil {
		return nil, fmt.Errorf("esscbench: issue card: %w", err)
	}
	k, err := signing.GenerateKey(signing.AlgSM2SM3)
	if err != nil {
		return nil, err
	}
	app := &client.Client{Base: e.base, Key: k, HTTP: e.http}
	_, err = app.Apply(ctx, wallet.ApplyRequest{CardNumber: number, SSN: ssn, Name: name, PIN: "123456"})
	var we *client.Error
	if !errors.As(err, &we) || we.Code != "pin_change_required" {
		return nil, fmt.Errorf("esscbench: apply with the initial PIN: expected pin_change_required, got %v", err)
	}
	if err := app.ChangePIN(ctx, number, "123456", benchPIN); err != nil {
		return nil, fmt.Errorf("esscbench: change PIN: %w", err)
	}
	if _, err := app.Apply(ctx, wallet.ApplyRequest{CardNumber: number, SSN: ssn, Name: name, PIN: benchPIN}); err != nil {
		return nil, fmt.Errorf("esscbench: apply: %w", err)
	}
	return &phone{app: app, number: number}, nil
}

// phonePool builds the phones once (each device may scan 20 times a minute,
// so a run needs enough of them) and hands them out exclusively.
func (e *env) phonePool(ctx context.Context) (chan *phone, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.phones != nil {
		return e.phones, nil
	}
	n := e.cfg.phonesNeeded()
	ps := make([]*phone, n)
	if err := parallel(ctx, min(e.cfg.Workers, 8), n, func(i int) error {
		var err error
		ps[i], err = e.newPhone(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	e.phones = make(chan *phone, n)
	for _, p := range ps {
		e.phones <- p
	}
	return e.phones, nil
}

// relyingParty is the gm portal the browser logs in to.
type relyingParty struct {
	*jwtClient
	redirect string
}

func (e *env) relyingParty(ctx context.Context) (*relyingParty, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rp != nil {
		return e.rp, nil
	}
	redirect := e.base + "/bench/callback"
	c, err := e.newJWTClient(ctx, "portal", map[string]any{"redirect_uris": []string{redirect},
		"grant_types": []string{"authorization_code", "refresh_token"},
		"scopes":      []string{"openid", "profile", "essc.card", "offline_access"}, "purposes": []string{"login"}})
	if err != nil {
		return nil, err
	}
	e.rp = &relyingParty{jwtClient: c, redirect: redirect}
	return e.rp, nil
}

// browser is one simulated browser: its own cookie jar on the shared
// keep-alive transport, redirects not followed.
type browser struct {
	e        *env
	rp       *relyingParty
	c        *http.Client
	verifier string
	state    string
	txn      string
	frame    string // the QR payload the page came with
}

func (e *env) newBrowser(rp *relyingParty) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, rp: rp, c: &http.Client{Transport: e.tr, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func b64rand() string { return base64.RawURLEncoding.EncodeToString([]byte(randHex(16))) }

// authorize opens the authorize endpoint with PKCE S256 and reads the
// transaction id from the QR page.
func (b *browser) authorize(ctx context.Context, scope string) error {
	b.verifier, b.state = b64rand()+b64rand(), b64rand()
	ch := sha256.Sum256([]byte(b.verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {b.rp.id}, "redirect_uri": {b.rp.redirect},
		"scope": {scope}, "state": {b.state}, "nonce": {b64rand()},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(ch[:])}, "code_challenge_method": {"S256"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.e.base+"/gm/oauth2/authorize?"+q.Encode(), nil)
	resp, err := b.c.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return failf(fmt.Sprintf("http_%d", resp.StatusCode), "authorize")
	}
	marker := `data-base="` + qrlogin.Base
	i := strings.Index(string(body), marker)
	if i < 0 {
		return failf("bad_response", "authorize: no QR transaction on the page")
	}
	rest := string(body)[i+len(marker):]
	j := strings.IndexByte(rest, '"')
	if j <= 0 {
		return failf("bad_response", "authorize: malformed transaction attribute")
	}
	b.txn = rest[:j]
	// The page carries the current frame (and the next ones, which login.js
	// shows on schedule): a holder who scans within those seconds costs no
	// /frame request, and the camera reads what the page draws.
	marker = `data-payload="`
	i = strings.Index(rest, marker)
	if i < 0 {
		return failf("bad_response", "authorize: no QR frame on the page")
	}
	rest = rest[i+len(marker):]
	if j = strings.IndexByte(rest, '"'); j <= 0 {
		return failf("bad_response", "authorize: malformed frame attribute")
	}
	b.frame = html.UnescapeString(rest[:j])
	return nil
}

func (b *browser) getJSON(ctx context.Context, path string, out any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.e.base+qrlogin.Base+b.txn+path, nil)
	return doJSON(b.c, req, http.StatusOK, out)
}

// complete collects the approval and returns the code from the redirect.
func (b *browser) complete(ctx context.Context) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.e.base+qrlogin.Base+b.txn+"/complete", nil)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.c.Do(req)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound {
		return "", failf(fmt.Sprintf("http_%d", resp.StatusCode), "complete")
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), b.rp.redirect) || loc.Query().Get("state") != b.state {
		return "", failf("bad_response", "complete: unexpected redirect")
	}
	if e := loc.Query().Get("error"); e != "" {
		return "", failf("oauth_"+e, "complete")
	}
	return loc.Query().Get("code"), nil
}

// browserState is one state the browser learnt (a poll answer or an event).
type browserState struct {
	State  string `json:"state"`
	Number int    `json:"number"`
}

// stream is the login page's server-sent-events stream, as login.js
// follows it: every "state" event, in order.
type stream struct {
	body   io.ReadCloser
	states chan browserState
}

// watch opens the page's event stream and reads it in the background.
func (b *browser) watch(ctx context.Context) (*stream, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.e.base+qrlogin.Base+b.txn+"/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := b.c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		return nil, failf(fmt.Sprintf("http_%d", resp.StatusCode), "events")
	}
	s := &stream{body: resp.Body, states: make(chan browserState, 4)}
	go func() {
		defer close(s.states)
		sc := bufio.NewScanner(resp.Body)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "state":
				var st browserState
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &st) == nil {
					s.states <- st
				}
			case line == "":
				event = ""
			}
		}
	}()
	return s, nil
}

// until waits for the stream's next event in state want.
func (s *stream) until(ctx context.Context, want string) (browserState, error) {
	for {
		select {
		case st, ok := <-s.states:
			if !ok {
				return st, failf("bad_response", "event stream ended before %q", want)
			}
			if st.State == want {
				return st, nil
			}
		case <-ctx.Done():
			return browserState{}, ctx.Err()
		}
	}
}

// login runs one full QR login, timing every step on rec, and returns the
// token answer. userinfo is called when withUserinfo is set. With sse the
// browser follows the transaction over the event stream as the login page
// does (steps watch, scanned, approved); otherwise it polls once after the
// scan (step status).
func (e *env) login(ctx context.Context, rp *relyingParty, phones chan *phone, rec *recorder, scope string, withUserinfo, sse bool) (tokenAnswer, error) {
	var tok tokenAnswer
	b := e.newBrowser(rp)
	if err := rec.step("authorize", func() error { return b.authorize(ctx, scope) }); err != nil {
		return tok, err
	}
	var events *stream
	if sse {
		if err := rec.step("watch", func() error {
			var err error
			if events, err = b.watch(ctx); err != nil {
				return err
			}
			_, err = events.until(ctx, qrlogin.StatePending)
			return err
		}); err != nil {
			return tok, err
		}
		defer events.body.Close()
	}
	var p *phone
	select {
	case p = <-phones:
	case <-ctx.Done():
		return tok, ctx.Err()
	}
	defer func() {
		if p != nil {
			phones <- p
		}
	}()
	if err := rec.step("scan", func() error {
		v, err := p.app.Scan(ctx, b.frame)
		if err == nil && v.Txn != b.txn {
			return failf("bad_response", "scan answered another transaction")
		}
		return walletErr(err)
	}); err != nil {
		return tok, err
	}
	var st browserState
	learn := "status"
	if sse {
		learn = "scanned"
	}
	if err := rec.step(learn, func() error {
		var err error
		if sse {
			st, err = events.until(ctx, qrlogin.StateScanned)
		} else {
			err = b.getJSON(ctx, "", &st)
		}
		if err != nil {
			return err
		}
		if st.State != qrlogin.StateScanned || st.Number == 0 {
			return failf("bad_response", "browser state %q after scan", st.State)
		}
		return nil
	}); err != nil {
		return tok, err
	}
	if err := rec.step("confirm", func() error { return walletErr(p.app.Confirm(ctx, b.txn, st.Number, benchPIN)) }); err != nil {
		return tok, err
	}
	phones <- p // the phone's part is done
	p = nil
	if sse {
		if err := rec.step("approved", func() error {
			_, err := events.until(ctx, qrlogin.StateApproved)
			return err
		}); err != nil {
			return tok, err
		}
	}
	var code string
	if err := rec.step("complete", func() error {
		var err error
		code, err = b.complete(ctx)
		return err
	}); err != nil {
		return tok, err
	}
	form, err := rp.form(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {rp.redirect},
		"code_verifier": {b.verifier}, "client_id": {rp.id}})
	if err != nil {
		return tok, err
	}
	if err := rec.step("token", func() error {
		if err := postForm(ctx, e.http, rp.tokenURL, form, "", "", &tok); err != nil {
			return err
		}
		if tok.IDToken == "" {
			return failf("bad_response", "code exchange without id_token")
		}
		return checkToken(tok)
	}); err != nil {
		return tok, err
	}
	if withUserinfo {
		if err := rec.step("userinfo", func() error {
			return apiJSON(ctx, e.http, http.MethodGet, e.base+"/gm/userinfo", tok.AccessToken, nil, http.StatusOK, nil)
		}); err != nil {
			return tok, err
		}
	}
	return tok, nil
}

func setupQRLogin(ctx context.Context, e *env) (opFunc, error) { return setupLogins(ctx, e, false) }

func setupQRLoginSSE(ctx context.Context, e *env) (opFunc, error) { return setupLogins(ctx, e, true) }

func setupLogins(ctx context.Context, e *env, sse bool) (opFunc, error) {
	rp, err := e.relyingParty(ctx)
	if err != nil {
		return nil, err
	}
	phones, err := e.phonePool(ctx)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, _ int, rec *recorder) error {
		_, err := e.login(ctx, rp, phones, rec, "openid profile essc.card", true, sse)
		return err
	}, nil
}

// ---- refresh ----

// setupRefresh logs every worker in once (untimed) with offline_access;
// each operation rotates the worker's refresh token. A worker whose chain
// breaks logs in again on its next operation (timed as relogin steps).
func setupRefresh(ctx context.Context, e *env) (opFunc, error) {
	rp, err := e.relyingParty(ctx)
	if err != nil {
		return nil, err
	}
	phones, err := e.phonePool(ctx)
	if err != nil {
		return nil, err
	}
	const scope = "openid essc.card offline_access"
	rts := make([]string, e.cfg.Workers)
	if err := parallel(ctx, min(e.cfg.Workers, 8), len(rts), func(i int) error {
		tok, err := e.login(ctx, rp, phones, newRecorder(), scope, false, false)
		if err == nil && tok.RefreshToken == "" {
			err = errors.New("esscbench: login with offline_access gave no refresh token")
		}
		rts[i] = tok.RefreshToken
		return err
	}); err != nil {
		return nil, fmt.Errorf("esscbench: refresh setup: %w", err)
	}
	return func(ctx context.Context, w int, rec *recorder) error {
		if rts[w] == "" {
			tok, err := e.login(ctx, rp, phones, newRecorder(), scope, false, false)
			if err != nil {
				return err
			}
			rts[w] = tok.RefreshToken
		}
		form, err := rp.form(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rts[w]}})
		if err != nil {
			return err
		}
		var tok tokenAnswer
		err = rec.step("refresh", func() error {
			if err := postForm(ctx, e.http, rp.tokenURL, form, "", "", &tok); err != nil {
				return err
			}
			if tok.RefreshToken == "" {
				return failf("bad_response", "refresh without a rotated refresh token")
			}
			return checkToken(tok)
		})
		rts[w] = tok.RefreshToken
		return err
	}, nil
}

// ---- presentation code ----

func setupPresentation(ctx context.Context, e *env) (opFunc, error) {
	phones, err := e.phonePool(ctx)
	if err != nil {
		return nil, err
	}
	c, err := e.newBasicClient(ctx, "counter", []string{wallet.ScopeVerify})
	if err != nil {
		return nil, err
	}
	tok, err := e.basicToken(ctx, c, wallet.ScopeVerify)
	if err != nil {
		return nil, fmt.Errorf("esscbench: counter token: %w", err)
	}
	return func(ctx context.Context, _ int, rec *recorder) error {
		var p *phone
		select {
		case p = <-phones:
		case <-ctx.Done():
			return ctx.Err()
		}
		var pc wallet.PresentationCode
		err := rec.step("issue", func() error {
			var err error
			pc, err = p.app.PresentationCode(ctx)
			return walletErr(err)
		})
		phones <- p
		if err != nil {
			return err
		}
		var id wallet.Identity
		return rec.step("redeem", func() error {
			if err := apiJSON(ctx, e.http, http.MethodPost, e.base+"/verify/v1/presentation-codes", tok,
				map[string]string{"code": pc.Code}, http.StatusOK, &id); err != nil {
				return err
			}
			if id.SSNMasked == "" || id.CardStatus == "" {
				return failf("bad_response", "presentation identity incomplete")
			}
			return nil
		})
	}, nil
}
