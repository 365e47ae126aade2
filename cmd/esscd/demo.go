package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/essc-project/essc/idp/admin"
	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/idp/secret"
	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
)

// The demo (make run): demonstration cards and clients, and a relying
// portal at /demo that is a real OIDC client of this server over HTTP.

// demoCard is one seeded physical card. SSNs are synthetic (valid GB 11643
// check characters, fictitious people).
type demoCard struct {
	Who, Name, SSNPrefix, Number, Region, PIN string
	Cancel                                    storage.CancelReason
}

var demoCards = []demoCard{
	{Who: "在职职工", Name: "王建国", SSNPrefix: "41010519850612301", Number: "DEMO00001", Region: "410105", PIN: "258147"},
	{Who: "待认证的退休人员", Name: "张秀英", SSNPrefix: "41010219520308202", Number: "DEMO00002", Region: "410102", PIN: "369258"},
	{Who: "未成年人（监护人：王建国）", Name: "王小明", SSNPrefix: "41010520150901301", Number: "DEMO00003", Region: "410105"},
	{Who: "已注销（死亡）", Name: "李德福", SSNPrefix: "41010319400101101", Number: "DEMO00004", Region: "410103", Cancel: storage.CancelDeath},
}

// ssnFor completes a 17-digit prefix with its GB 11643 check character.
func ssnFor(prefix17 string) string { return prefix17 + string(card.SSNCheckChar(prefix17)) }

// demoClients are the seeded relying parties; secrets and keys go to DATA/demo.
type demoPortal struct {
	Profile  string `json:"profile"`
	ClientID string `json:"client_id"`
	Secret   string `json:"client_secret,omitempty"`
	KeyPEM   string `json:"key_pem,omitempty"` // SM2 private key for private_key_jwt (gm)
}

// seedDemo creates the demo data once; later starts find it and change nothing.
func (a *app) seedDemo(ctx context.Context) error {
	dir := filepath.Join(a.cfg.Data, "demo")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	actor := card.Actor{ID: "demo-seed"}
	created := map[string]bool{}
	for _, d := range demoCards {
		if _, err := a.reg.CardByNumber(ctx, d.Number); err == nil {
			continue
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if _, err := a.cards.IssueCard(ctx, actor, card.IssueRequest{SSN: ssnFor(d.SSNPrefix), Name: d.Name, Number: d.Number, Region: d.Region}); err != nil {
			return fmt.Errorf("demo card %s: %w", d.Number, err)
		}
		created[d.Number] = true
		if d.PIN != "" {
			if err := a.cards.ChangePIN(ctx, actor, d.Number, "123456", d.PIN); err != nil {
				return fmt.Errorf("demo PIN %s: %w", d.Number, err)
			}
		}
		if d.Cancel != "" {
			if _, err := a.cards.Cancel(ctx, actor, card.CardRef{Number: d.Number}, d.Cancel); err != nil {
				return fmt.Errorf("demo cancel %s: %w", d.Number, err)
			}
		}
	}
	if created[demoCards[2].Number] {
		if _, err := a.cards.Delegate(ctx, actor, ssnFor(demoCards[2].SSNPrefix), ssnFor(demoCards[0].SSNPrefix),
			card.DelegationRequest{Kind: storage.DelegationGuardian}); err != nil {
			return fmt.Errorf("demo guardian delegation: %w", err)
		}
	}
	return a.seedDemoClients(ctx, dir)
}

func (a *app) seedDemoClients(ctx context.Context, dir string) error {
	path := filepath.Join(dir, "portals.json")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	clients, err := admin.NewClients(a.reg, secret.Hasher{Key: a.secrets.ClientSecretKey}, a.now)
	if err != nil {
		return err
	}
	actor := card.Actor{ID: "demo-seed"}
	redirect := a.cfg.Issuer + "/demo/callback"
	gmKey, err := signing.GenerateKey(signing.AlgSM2SM3)
	if err != nil {
		return err
	}
	jwks, _ := json.Marshal(signing.JWKS{Keys: []signing.JWK{gmKey.PublicJWK()}})
	pem, _ := signing.MarshalPKCS8PEM(gmKey, nil)
	specs := []admin.ClientSpec{
		{ID: "demo-portal-intl", Name: "演示门户（国际算法）", Domain: "127.0.0.1", Profile: "intl", AuthMethod: "client_secret_basic",
			RedirectURIs: []string{redirect}, GrantTypes: []string{"authorization_code", "refresh_token"},
			Scopes: []string{"openid", "profile", "essc.card"}, Purposes: []string{"login"}},
		{ID: "demo-portal-gm", Name: "省网上办事大厅（演示）", Domain: "127.0.0.1", Profile: "gm", AuthMethod: "private_key_jwt", JWKS: jwks,
			RedirectURIs: []string{redirect}, GrantTypes: []string{"authorization_code", "refresh_token"},
			Scopes: []string{"openid", "profile", "essc.card"}, Purposes: []string{"login", "pension_certification"}},
		{ID: "demo-pension-agency", Name: "社保经办机构（演示）", Domain: "127.0.0.1", Profile: "gm", AuthMethod: "private_key_jwt", JWKS: jwks,
			GrantTypes: []string{"client_credentials"}, Scopes: []string{"essc.entitlement.manage"}},
		{ID: "demo-counter", Name: "社保服务网点柜台（演示）", Domain: "127.0.0.1", Profile: "intl", AuthMethod: "client_secret_basic",
			GrantTypes: []string{"client_credentials"}, Scopes: []string{"essc.verify"}},
	}
	var portals []demoPortal
	for _, spec := range specs {
		_, plain, err := clients.Create(ctx, actor, spec)
		if err != nil && !errors.Is(err, card.ErrExists) {
			return fmt.Errorf("demo client %s: %w", spec.ID, err)
		}
		p := demoPortal{Profile: spec.Profile, ClientID: spec.ID, Secret: plain}
		if spec.AuthMethod == "private_key_jwt" {
			p.KeyPEM = string(pem)
		}
		portals = append(portals, p)
	}
	b, _ := json.MarshalIndent(portals, "", "  ")
	return os.WriteFile(path, b, 0o600)
}

// demoWalkthrough is printed at start in demo mode (plain text on stderr).
func (a *app) demoWalkthrough(w io.Writer) {
	worker, pensioner := demoCards[0], demoCards[1]
	fmt.Fprintf(w, `
essc 演示环境已启动 / demo ready
  1. 浏览器打开 %[1]s/demo ，选择“国密登录”或“国际算法登录”，页面显示动态二维码。
  2. 在另一个终端用 e-card 命令行应用（模拟手机）申领电子社保卡：
       bin/ecard --server %[1]s init
       bin/ecard apply --card %[2]s --ssn %[3]s --name %[4]s --pin %[5]s
  3. 扫码：复制登录页上“点此打开”链接（essc://login?...），或保存二维码图片后：
       bin/ecard scan 'essc://login?...'          # 或 bin/ecard scan --image qr.png
  4. 在浏览器上看到一个数字，在手机上确认同一个数字：
       bin/ecard confirm --number <浏览器上的数字> --pin %[5]s
  5. 浏览器回到演示门户，显示已验证的身份声明和 SM2 签名的 ID Token。
  其他演示卡：退休人员 %[6]s（%[7]s，密码 %[8]s）；未成年人 DEMO00003（初始密码，需先修改）；已注销 DEMO00004。
  管理客户端凭据：%[9]s
`, a.cfg.Issuer, worker.Number, ssnFor(worker.SSNPrefix), worker.Name, worker.PIN,
		pensioner.Number, pensioner.Name, pensioner.PIN, filepath.Join(a.cfg.Data, "admin-client.json"))
}

// ---- the demo relying portal ---------------------------------------------

var demoTmpl = template.Must(template.New("demo").Parse(`<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>演示门户 — essc</title><style>
body{font-family:"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif;max-width:860px;margin:2rem auto;padding:0 1rem;font-size:17px}
a.button{display:inline-block;padding:.6rem 1.2rem;margin:.3rem;background:#c8102e;color:#fff;border-radius:6px;text-decoration:none}
pre{white-space:pre-wrap;word-break:break-all;background:#f4f4f4;padding:.8rem;border-radius:6px}
.ok{color:#070}.bad{color:#a00}</style></head><body>
<h1>演示门户</h1>
{{if .Error}}<p class="bad" role="alert">{{.Error}}</p>{{end}}
{{if .Claims}}
<h2>登录成功（{{.Profile}}）</h2>
<p>ID Token 签名算法 <strong>{{.Alg}}</strong>，签名验证：{{if .Verified}}<span class="ok">通过（JWKS：{{.JWKS}}）</span>{{else}}<span class="bad">失败</span>{{end}}</p>
<h3>已验证的声明</h3><pre>{{.Claims}}</pre>
<h3>原始 ID Token</h3><pre>{{.Raw}}</pre>
<h3>JOSE 头</h3><pre>{{.Header}}</pre>
{{end}}
<p><a class="button" href="/demo/login?profile=gm">国密登录（SM2）</a>
<a class="button" href="/demo/login?profile=intl">国际算法登录（ES256）</a>
<a class="button" href="/demo/login?profile=gm&amp;acr=face">养老金资格认证（刷脸）</a></p>
<p>本门户是 essc 的一个普通 OIDC 客户端：它通过 HTTP 调用发现、授权、令牌端点，并用服务器公布的 JWKS 验证 ID Token。</p>
</body></html>`))

type demoPage struct {
	Error, Profile, Alg, Claims, Raw, Header, JWKS string
	Verified                                       bool
}

// demoState is the portal's login state, in an HttpOnly cookie MACed with a
// key derived from the server secret.
type demoState struct {
	Profile  string `json:"p"`
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Exp      int64  `json:"e"`
}

func (a *app) mountDemo(mux *http.ServeMux) {
	mux.HandleFunc("GET /demo", a.demoHome)
	mux.HandleFunc("GET /demo/login", a.demoLogin)
	mux.HandleFunc("GET /demo/callback", a.demoCallback)
}

func demoHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.Header().Set("Cache-Control", "no-store")
}

func (a *app) demoHome(w http.ResponseWriter, _ *http.Request) {
	demoHeaders(w)
	demoTmpl.Execute(w, demoPage{})
}

func (a *app) demoPortal(profile string) (demoPortal, error) {
	b, err := os.ReadFile(filepath.Join(a.cfg.Data, "demo", "portals.json"))
	if err != nil {
		return demoPortal{}, err
	}
	var ps []demoPortal
	if err := json.Unmarshal(b, &ps); err != nil {
		return demoPortal{}, err
	}
	for _, p := range ps {
		if p.Profile == profile && strings.HasPrefix(p.ClientID, "demo-portal-") {
			return p, nil
		}
	}
	return demoPortal{}, fmt.Errorf("no demo portal for profile %q", profile)
}

func (a *app) demoIssuer(profile string) string {
	if profile == "gm" {
		return a.cfg.Issuer + "/gm"
	}
	return a.cfg.Issuer
}

func demoRandom() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (a *app) demoLogin(w http.ResponseWriter, r *http.Request) {
	profile := r.URL.Query().Get("profile")
	if profile != "gm" && profile != "intl" {
		a.demoFail(w, "未知的登录方式")
		return
	}
	p, err := a.demoPortal(profile)
	if err != nil {
		a.log.Error("demo portal", "err", err)
		a.demoFail(w, "演示门户未初始化")
		return
	}
	st := demoState{Profile: profile, State: demoRandom(), Nonce: demoRandom(), Verifier: demoRandom(), Exp: a.now().Add(10 * time.Minute).Unix()}
	b, _ := json.Marshal(st)
	val := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: "demo-login", Value: val + "." + a.demoMAC(val), Path: "/demo", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: a.secureCookies(), MaxAge: 600})
	ch := sha256.Sum256([]byte(st.Verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {p.ClientID}, "redirect_uri": {a.cfg.Issuer + "/demo/callback"},
		"scope": {"openid profile essc.card"}, "state": {st.State}, "nonce": {st.Nonce},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(ch[:])}, "code_challenge_method": {"S256"}}
	if r.URL.Query().Get("acr") == "face" {
		q.Set("acr_values", "urn:essc:acr:face")
		q.Set("purpose", "pension_certification")
		q.Set("max_age", "0")
	}
	http.Redirect(w, r, a.demoIssuer(profile)+"/oauth2/authorize?"+q.Encode(), http.StatusFound)
}

func (a *app) demoMAC(v string) string {
	m := hmac.New(sha256.New, derive(a.secrets.TokenKey, "essc demo portal cookie"))
	m.Write([]byte(v))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (a *app) demoFail(w http.ResponseWriter, msg string) {
	demoHeaders(w)
	w.WriteHeader(http.StatusBadRequest)
	demoTmpl.Execute(w, demoPage{Error: msg})
}

// demoCallback is the portal's redirect URI: it checks state against the
// cookie, exchanges the code over HTTP and verifies the ID token with the
// JWKS fetched from the server.
func (a *app) demoCallback(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie("demo-login")
	if err != nil {
		a.demoFail(w, "登录状态丢失，请重新登录")
		return
	}
	val, mac, _ := strings.Cut(c.Value, ".")
	var st demoState
	b, derr := base64.RawURLEncoding.DecodeString(val)
	if !hmac.Equal([]byte(mac), []byte(a.demoMAC(val))) || derr != nil || json.Unmarshal(b, &st) != nil ||
		st.Exp < a.now().Unix() || r.URL.Query().Get("state") != st.State {
		a.demoFail(w, "登录状态无效，请重新登录")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: "demo-login", Path: "/demo", MaxAge: -1})
	if e := r.URL.Query().Get("error"); e != "" {
		a.log.Info("demo portal: authorize error", "error", e)
		a.demoFail(w, "登录未完成，请重试")
		return
	}
	page, err := a.demoExchange(r.Context(), st, r.URL.Query().Get("code"))
	if err != nil {
		a.log.Warn("demo portal exchange", "err", err)
		a.demoFail(w, "令牌交换失败")
		return
	}
	demoHeaders(w)
	demoTmpl.Execute(w, page)
}

func (a *app) demoExchange(ctx context.Context, st demoState, code string) (demoPage, error) {
	p, err := a.demoPortal(st.Profile)
	if err != nil {
		return demoPage{}, err
	}
	iss := a.demoIssuer(st.Profile)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {a.cfg.Issuer + "/demo/callback"},
		"code_verifier": {st.Verifier}, "client_id": {p.ClientID}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, iss+"/oauth2/token", nil)
	if p.KeyPEM != "" {
		k, err := signing.ParsePKCS8PEM([]byte(p.KeyPEM), nil)
		if err != nil {
			return demoPage{}, err
		}
		now := a.now()
		as, err := signing.SignClaims(k, "", map[string]any{"iss": p.ClientID, "sub": p.ClientID, "aud": iss + "/oauth2/token",
			"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": demoRandom()})
		if err != nil {
			return demoPage{}, err
		}
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", as)
	} else {
		req.SetBasicAuth(url.QueryEscape(p.ClientID), url.QueryEscape(p.Secret))
	}
	req.Body = io.NopCloser(strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return demoPage{}, err
	}
	defer resp.Body.Close()
	var tok struct {
		IDToken string `json:"id_token"`
		Error   string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tok); err != nil || resp.StatusCode != 200 {
		return demoPage{}, fmt.Errorf("token endpoint: %d %s %v", resp.StatusCode, tok.Error, err)
	}
	jresp, err := hc.Get(iss + "/jwks.json")
	if err != nil {
		return demoPage{}, err
	}
	defer jresp.Body.Close()
	jb, _ := io.ReadAll(io.LimitReader(jresp.Body, 1<<20))
	keys, err := signing.ParseJWKS(jb)
	if err != nil {
		return demoPage{}, err
	}
	page := demoPage{Profile: st.Profile, Raw: tok.IDToken, JWKS: iss + "/jwks.json"}
	hdr, payload, err := signing.Verify(tok.IDToken, keys)
	wantAlg := signing.AlgES256
	if st.Profile == "gm" {
		wantAlg = signing.AlgSM2SM3
	}
	if err == nil && hdr.Alg != wantAlg {
		err = fmt.Errorf("alg %s, want %s", hdr.Alg, wantAlg)
	}
	if err == nil {
		var claims map[string]any
		json.Unmarshal(payload, &claims)
		err = checkIDClaims(claims, iss, p.ClientID, st.Nonce, a.now())
		pretty, _ := json.MarshalIndent(claims, "", "  ")
		page.Claims, page.Alg, page.Header = string(pretty), hdr.Alg, string(hdr.Raw)
	}
	page.Verified = err == nil
	if err != nil {
		return page, fmt.Errorf("ID token verification: %w", err)
	}
	return page, nil
}

// checkIDClaims is the relying party's check of an ID token's claims (OIDC
// Core §3.1.3.7): issuer, audience, nonce, expiry and issue time.
func checkIDClaims(c map[string]any, iss, clientID, nonce string, now time.Time) error {
	aud := false
	switch v := c["aud"].(type) {
	case string:
		aud = v == clientID
	case []any:
		for _, x := range v {
			aud = aud || x == clientID
		}
	}
	exp, _ := c["exp"].(float64)
	iat, _ := c["iat"].(float64)
	switch {
	case c["iss"] != iss:
		return errors.New("iss mismatch")
	case !aud:
		return errors.New("aud does not name this client")
	case c["nonce"] != nonce:
		return errors.New("nonce mismatch")
	case exp == 0 || now.Unix() >= int64(exp):
		return errors.New("expired")
	case iat == 0 || int64(iat) > now.Add(time.Minute).Unix():
		return errors.New("issued in the future")
	}
	return nil
}
