package qrlogin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"strings"
	"testing"
)

// The differential tests of appendLoginPage: web/login.html executed by
// html/template is the specification, and the direct renderer must produce
// the same bytes for every pageData. A change to login.html that is not
// mirrored in appendLoginPage fails here.

var loginStates = []string{StatePending, StateScanned, StateApproved, StateDenied, StateCancelled, StateExpired, StateConsumed}

// templateLoginPage is the specification: login.html through html/template.
func templateLoginPage(tb testing.TB, d pageData) string {
	tb.Helper()
	var buf bytes.Buffer
	if err := pageTmpl.ExecuteTemplate(&buf, "login.html", d); err != nil {
		tb.Fatal(err)
	}
	return buf.String()
}

// checkLoginPage fails tb unless appendLoginPage writes the template's bytes
// for d (after a prefix, to check that it appends).
func checkLoginPage(tb testing.TB, d pageData) {
	tb.Helper()
	want := templateLoginPage(tb, d)
	const prefix = "prefix\x00"
	got := appendLoginPage([]byte(prefix), &d)
	if !bytes.HasPrefix(got, []byte(prefix)) {
		tb.Fatalf("appendLoginPage lost the bytes it appends to")
	}
	if g := string(got[len(prefix):]); g != want {
		i := 0
		for i < len(g) && i < len(want) && g[i] == want[i] {
			i++
		}
		lo := max(i-80, 0)
		tb.Fatalf("direct renderer differs from login.html at byte %d of %d/%d:\n got: %q\nwant: %q\ndata: %+v",
			i, len(g), len(want), g[lo:min(i+80, len(g))], want[lo:min(i+80, len(want))], d)
	}
}

// realisticLoginPage is the page as render builds it for a transaction in
// state: a pending page with its frames, the others with their message.
func realisticLoginPage(state string, elderly bool) pageData {
	const txn = "q7Jx2mZ0aTk3LwYbC9dE1f"
	d := pageData{View: View{Txn: txn, State: state, Elderly: elderly}, Base: Base + txn,
		RPName: "社保网上服务平台", RPDomain: "portal.example.gov.cn", Purpose: purposeText("login"),
		Data:    scopeTexts([]string{"openid", "profile", "essc.card"}),
		CSSPath: "/qr/v1/static/login.css", JSPath: "/qr/v1/static/login.js", QRJSPath: "/qr/v1/static/qrcode.js",
		Remaining: 287}
	if elderly {
		d.View.Code = "K7M2QX"
	}
	mac := bytes.Repeat([]byte{0xa5}, macLen)
	switch state {
	case StatePending:
		d.Frame = frameBody{Payload: Frame{Txn: txn, Elapsed: 12, MAC: mac}.String(), NextMS: 640, Elderly: elderly, RefreshMS: 4640}
		for i := range UpcomingFrames {
			d.Frame.Upcoming = append(d.Frame.Upcoming, upcomingFrame{Payload: Frame{Txn: txn, Elapsed: 13 + i, MAC: mac}.String(), AtMS: 640 + 1000*int64(i)})
		}
		up, _ := json.Marshal(d.Frame.Upcoming)
		d.Upcoming = string(up)
		d.AppLink = template.URL(d.Frame.Payload)
	case StateScanned:
		d.View.Number = 47
		d.Message = "已扫码，请在手机上选择与下方相同的数字并确认。"
	case StateDenied:
		d.Message = deniedMessage(ReasonWrongNumber)
	default:
		d.Message = "登录已取消。"
	}
	return d
}

func TestLoginPageMatchesTemplate(t *testing.T) {
	type tc struct {
		name string
		d    pageData
	}
	var cases []tc
	for _, state := range loginStates {
		for _, elderly := range []bool{false, true} {
			cases = append(cases, tc{fmt.Sprintf("ok/realistic/%s/elderly=%t", state, elderly), realisticLoginPage(state, elderly)})
		}
	}

	// Every state with every combination of the optional parts.
	datas := []struct {
		name string
		data []string
	}{{"nil", nil}, {"empty", []string{}}, {"one", []string{"姓名"}}, {"three", []string{"姓名", "", "完整的社会保障号码"}}}
	for _, state := range loginStates {
		for _, elderly := range []bool{false, true} {
			for _, code := range []string{"", "K7M2QX"} {
				for _, number := range []int{0, 47} {
					for _, frame := range []bool{false, true} {
						for _, data := range datas {
							d := realisticLoginPage(StatePending, elderly)
							d.View.State, d.View.Code, d.View.Number, d.Data = state, code, number, data.data
							if !frame {
								d.Frame, d.AppLink, d.Upcoming = frameBody{}, "", ""
							}
							cases = append(cases, tc{fmt.Sprintf("ok/combination/%s/elderly=%t/code=%t/number=%t/frame=%t/data=%s",
								state, elderly, code != "", number != 0, frame, data.name), d})
						}
					}
				}
			}
		}
	}
	for _, frame := range []struct {
		name string
		set  func(*pageData)
	}{
		{"payload-only", func(d *pageData) { d.AppLink, d.Upcoming = "", "" }},
		{"applink-only", func(d *pageData) { d.Frame.Payload, d.Upcoming = "", "" }},
		{"upcoming-only", func(d *pageData) { d.Frame.Payload, d.AppLink = "", "" }},
		{"unknown-state", func(d *pageData) { d.View.State = "other" }},
		{"empty-state", func(d *pageData) { d.View.State = "" }},
		{"state-case", func(d *pageData) { d.View.State = "Pending" }},
		{"ints-extreme", func(d *pageData) {
			d.Remaining, d.View.Number, d.Frame.NextMS, d.Frame.RefreshMS = math.MinInt, math.MaxInt, math.MinInt64, math.MaxInt64
		}},
		{"ints-negative", func(d *pageData) { d.Remaining, d.View.Number, d.Frame.NextMS, d.Frame.RefreshMS = -1, -47, -100, 0 }},
		{"zero", func(d *pageData) { *d = pageData{} }},
	} {
		d := realisticLoginPage(StatePending, false)
		frame.set(&d)
		cases = append(cases, tc{"ok/" + frame.name, d})
	}

	// Every hostile string in every string field, on a page that shows all
	// of them.
	fields := []struct {
		name string
		set  func(*pageData, string)
	}{
		{"Base", func(d *pageData, s string) { d.Base = s }},
		{"State", func(d *pageData, s string) { d.View.State = s }},
		{"Code", func(d *pageData, s string) { d.View.Code = s }},
		{"RPName", func(d *pageData, s string) { d.RPName = s }},
		{"RPDomain", func(d *pageData, s string) { d.RPDomain = s }},
		{"Purpose", func(d *pageData, s string) { d.Purpose = s }},
		{"Data", func(d *pageData, s string) { d.Data = []string{s} }},
		{"Data2", func(d *pageData, s string) { d.Data = []string{"姓名", s, s} }},
		{"Payload", func(d *pageData, s string) { d.Frame.Payload = s }},
		{"Upcoming", func(d *pageData, s string) { d.Upcoming = s }},
		{"AppLink", func(d *pageData, s string) { d.AppLink = template.URL(s) }},
		{"Message", func(d *pageData, s string) { d.Message = s }},
		{"CSSPath", func(d *pageData, s string) { d.CSSPath = s }},
		{"JSPath", func(d *pageData, s string) { d.JSPath = s }},
		{"QRJSPath", func(d *pageData, s string) { d.QRJSPath = s }},
		{"all", func(d *pageData, s string) {
			d.Base, d.View.Code, d.RPName, d.RPDomain, d.Purpose, d.Data = s, s, s, s, s, []string{s, s}
			d.Frame.Payload, d.Upcoming, d.AppLink, d.Message = s, s, template.URL(s), s
			d.CSSPath, d.JSPath, d.QRJSPath = s, s, s
		}},
	}
	for _, f := range fields {
		for i, s := range hostileStrings() {
			d := realisticLoginPage(StatePending, false)
			d.View.Code, d.View.Number = "K7M2QX", 47
			f.set(&d, s)
			cases = append(cases, tc{fmt.Sprintf("ok/hostile/%s/%d", f.name, i), d})
		}
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkLoginPage(t, c.d) })
	}
}

// hostileStrings are values that exercise every escaping rule: HTML
// specials, URL schemes (html/template's filter) and characters (its
// normalizer), NUL, invalid UTF-8, template syntax, every byte.
func hostileStrings() []string {
	var all []byte
	for c := range 256 {
		all = append(all, byte(c))
	}
	return []string{
		"",
		"<script>alert(1)</script>",
		`"'`,
		`" onmouseover="alert(1)`,
		"' x='",
		"&", "&amp;&#34;&lt;", "a+b", "`backtick` ${x}",
		"javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:x", "\tjavascript:x",
		"data:text/html,<b>x</b>", "vbscript:x", "essc://login?v=1&t=x",
		"http://ok.example/a?b=1&c=2#d", "HTTPS://OK/", "mailto:a@b.example", "httpſ://kelvin", "MAİLTO:x",
		"/a:b", "a/b:c", ":", "://", "#frag", "?q=1&r=2", "//evil.example/x",
		"人社部 电子社保卡（测试）", "\x00", "a\x00b", "\xff\xfe", "\xc0<", "\xe4\xb8", "\xe4\xb8<", "\uFFFD",
		"\u2028\u2029", "\ufdd0\uffff", "\U0001F600",
		"</main>", "</script><script>", "<!--", "-->", "<![CDATA[", "{{.Base}}", "{{", "}}",
		"%", "%4", "%41", "%zz", "%%41", "a%2", "100%", "%E4%B8%AD", "%e4%b8%ad",
		" \t\n\r\v\f", "=", `\`, "[]{}|^", "!$*,;@~_.-()",
		"\x7f\x01\x1f",
		strings.Repeat("<&>\"'+", 200),
		string(all),
	}
}

// The page as render makes it fits the capacity loginPageCap gives it.
func TestLoginPageCap(t *testing.T) {
	for _, state := range loginStates {
		for _, elderly := range []bool{false, true} {
			t.Run(fmt.Sprintf("ok/%s/elderly=%t", state, elderly), func(t *testing.T) {
				d := realisticLoginPage(state, elderly)
				b := make([]byte, 0, loginPageCap(&d))
				if out := appendLoginPage(b, &d); cap(out) != cap(b) {
					t.Errorf("page of %d bytes outgrew its capacity %d", len(out), cap(b))
				}
			})
		}
	}
}

// FuzzLoginPage feeds arbitrary values into pageData and checks that
// appendLoginPage still writes exactly what login.html does. sel < 7 picks
// one of the states (the template branches on them), else state is used.
func FuzzLoginPage(f *testing.F) {
	for i, state := range loginStates {
		d := realisticLoginPage(state, i%2 == 1)
		f.Add(uint8(i), d.View.Elderly, d.Base, d.RPName, d.RPDomain, d.Purpose, strings.Join(d.Data, "|"), d.Frame.Payload,
			d.Upcoming, string(d.AppLink), d.Message, d.View.Code, d.CSSPath, d.JSPath, d.QRJSPath, "", d.Remaining, d.View.Number,
			d.Frame.NextMS, d.Frame.RefreshMS)
	}
	for i, s := range hostileStrings() {
		f.Add(uint8(i), i%2 == 0, s, s, s, s, s+"|"+s, s, s, s, s, s, s, s, s, s, -i, i, int64(i), int64(-i))
	}
	f.Fuzz(func(t *testing.T, sel uint8, elderly bool, base, rpName, rpDomain, purpose, data, payload, upcoming, appLink,
		message, code, css, js, qrjs, state string, remaining, number int, nextMS, refreshMS int64) {
		if int(sel) < len(loginStates) {
			state = loginStates[sel]
		}
		d := pageData{View: View{State: state, Elderly: elderly, Code: code, Number: number}, Base: base,
			RPName: rpName, RPDomain: rpDomain, Purpose: purpose,
			Frame:    frameBody{Payload: payload, NextMS: nextMS, RefreshMS: refreshMS},
			Upcoming: upcoming, AppLink: template.URL(appLink), Message: message,
			CSSPath: css, JSPath: js, QRJSPath: qrjs, Remaining: remaining}
		if data != "" {
			d.Data = strings.Split(data, "|")
		}
		checkLoginPage(t, d)
	})
}

// BenchmarkLoginPage compares html/template with the direct renderer on a
// pending page as render builds it (a fresh buffer per page, as there).
func BenchmarkLoginPage(b *testing.B) {
	d := realisticLoginPage(StatePending, false)
	b.Run("template", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var buf bytes.Buffer
			if err := pageTmpl.ExecuteTemplate(&buf, "login.html", d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = appendLoginPage(make([]byte, 0, loginPageCap(&d)), &d)
		}
	})
}
