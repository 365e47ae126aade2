package qrlogin

import (
	"strconv"
	"strings"
)

// appendLoginPage appends web/login.html rendered from d to b, without
// html/template.
//
// Why: executing the template cost ~90 µs of CPU per page under load
// (html/template was 4.7% of the server's CPU in a full QR login profile:
// reflection for every field lookup, every escaper called through
// reflect.Value.Call), most of the /authorize step of a ~1.9 ms login. This
// writes the literal text and each value with the escaper html/template
// chooses for its context, a few µs for the same bytes.
//
// web/login.html stays the specification: the output is byte-identical to
// pageTmpl.ExecuteTemplate(w, "login.html", d) for every pageData, which
// TestLoginPageMatchesTemplate (tables of states and hostile values) and
// FuzzLoginPage enforce. login.html and this function change together: edit
// the template, then mirror the edit here until those tests pass again.
//
// The contexts, as html/template's escaper rewrites the template's actions:
//   - HTML text and quoted attribute values (data-*, class, …):
//     appendHTMLEscaped (_html_template_htmlescaper / _attrescaper);
//   - URL attribute values (href, src, action) at the start of the URL:
//     appendURLAttr (_urlfilter | _urlnormalizer | _attrescaper), the filter
//     skipped for a template.URL (AppLink);
//   - ints and bools: their fmt.Sprint form, which needs no escaping.
func appendLoginPage(b []byte, d *pageData) []byte {
	elderly, state := d.View.Elderly, d.View.State
	b = append(b, `<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>电子社保卡扫码登录</title>
<link rel="stylesheet" href="`...)
	b = appendURLAttr(b, d.CSSPath, false)
	b = append(b, `">
</head>
<body class="`...)
	if elderly {
		b = append(b, "elderly"...)
	}
	b = append(b, `">
<main id="login" data-base="`...)
	b = appendHTMLEscaped(b, d.Base)
	b = append(b, `" data-state="`...)
	b = appendHTMLEscaped(b, state)
	b = append(b, `" data-elderly="`...)
	b = strconv.AppendBool(b, elderly)
	b = append(b, `" data-remaining="`...)
	b = strconv.AppendInt(b, int64(d.Remaining), 10)
	b = append(b, `" data-next-ms="`...)
	b = strconv.AppendInt(b, d.Frame.NextMS, 10)
	b = append(b, `" data-refresh-ms="`...)
	b = strconv.AppendInt(b, d.Frame.RefreshMS, 10)
	b = append(b, `" data-upcoming="`...)
	b = appendHTMLEscaped(b, d.Upcoming)
	b = append(b, `">
  <h1>电子社保卡扫码登录</h1>
  <p class="rp">登录到：<strong>`...)
	b = appendHTMLEscaped(b, d.RPName)
	b = append(b, `</strong>（`...)
	b = appendHTMLEscaped(b, d.RPDomain)
	b = append(b, `）</p>
  <p class="purpose">用途：`...)
	b = appendHTMLEscaped(b, d.Purpose)
	b = append(b, "</p>\n  "...)
	if len(d.Data) > 0 {
		b = append(b, `<p class="data">将提供：`...)
		for i, s := range d.Data {
			if i > 0 {
				b = append(b, "、"...)
			}
			b = appendHTMLEscaped(b, s)
		}
		b = append(b, "</p>"...)
	}
	b = append(b, "\n\n  <section id=\"qr\" "...)
	if state != StatePending {
		b = append(b, "hidden"...)
	}
	b = append(b, ` aria-live="polite">
    `...)
	if d.Frame.Payload != "" {
		b = append(b, `<img id="qr-img" hidden data-payload="`...)
		b = appendHTMLEscaped(b, d.Frame.Payload)
		b = append(b, `" alt="登录二维码：请用电子社保卡 App 扫描" width="`...)
		b = appendQRSize(b, elderly)
		b = append(b, `" height="`...)
		b = appendQRSize(b, elderly)
		b = append(b, `">
    <noscript><img src="`...)
		b = appendURLAttr(b, d.Base, false)
		b = append(b, `/frame.png" alt="登录二维码：请用电子社保卡 App 扫描" width="`...)
		b = appendQRSize(b, elderly)
		b = append(b, `" height="`...)
		b = appendQRSize(b, elderly)
		b = append(b, `"></noscript>`...)
	}
	b = append(b, `
    <p class="hint">请打开电子社保卡 App，点击“扫一扫”扫描二维码。二维码每`...)
	if elderly {
		b = append(b, '5')
	} else {
		b = append(b, '1')
	}
	b = append(b, `秒更新一次，截图无效。</p>
    `...)
	if d.View.Code != "" {
		b = append(b, `<p class="code">无法扫码？在 App 中选择“输入登录码”，输入：<strong id="code">`...)
		b = appendHTMLEscaped(b, d.View.Code)
		b = append(b, "</strong></p>"...)
	}
	b = append(b, "\n    "...)
	if d.AppLink != "" {
		b = append(b, `<p class="applink"><a id="app-link" href="`...)
		b = appendURLAttr(b, string(d.AppLink), true)
		b = append(b, `">已在本机安装电子社保卡 App？点此打开</a></p>`...)
	}
	b = append(b, `
    <p class="remaining">剩余有效时间：<span id="remaining">`...)
	b = strconv.AppendInt(b, int64(d.Remaining), 10)
	b = append(b, "</span> 秒</p>\n    "...)
	if !elderly {
		b = append(b, `
    <form method="post" action="`...)
		b = appendURLAttr(b, d.Base, false)
		b = append(b, `/elderly"><button type="submit" class="secondary">大字模式（二维码更大、更新更慢）</button></form>
    `...)
	}
	b = append(b, `
  </section>

  <section id="scanned" `...)
	if state != StateScanned {
		b = append(b, "hidden"...)
	}
	b = append(b, ` aria-live="assertive">
    <p>已扫码。请在手机上选择下面这个数字，并输入密码确认：</p>
    <p class="number" id="number">`...)
	if d.View.Number != 0 {
		b = strconv.AppendInt(b, int64(d.View.Number), 10)
	}
	b = append(b, `</p>
    <p class="warn">如果您没有扫码，请不要在任何手机上确认，并关闭本页面。</p>
  </section>

  <p id="message" class="message" role="status">`...)
	b = appendHTMLEscaped(b, d.Message)
	b = append(b, `</p>

  <form id="complete" method="post" action="`...)
	b = appendURLAttr(b, d.Base, false)
	b = append(b, `/complete">
    <noscript><p>页面脚本未启用：在手机上确认后，请点击</p></noscript>
    <button type="submit" id="complete-btn" `...)
	if state == StatePending {
		b = append(b, `class="noscript-only"`...)
	}
	b = append(b, `>已在手机上确认，继续登录</button>
  </form>
  <div class="actions">
    <form method="post" action="`...)
	b = appendURLAttr(b, d.Base, false)
	b = append(b, `/restart" id="restart" `...)
	if state != StateExpired && state != StateDenied && state != StateCancelled {
		b = append(b, "hidden"...)
	}
	b = append(b, `><button type="submit">刷新二维码</button></form>
    <form method="post" action="`...)
	b = appendURLAttr(b, d.Base, false)
	b = append(b, `/cancel" id="cancel" `...)
	if state != StatePending && state != StateScanned {
		b = append(b, "hidden"...)
	}
	b = append(b, `><button type="submit" class="secondary">取消登录</button></form>
  </div>
  <p class="footer">本页面不会显示您的任何个人信息。请确认上方网站名称与您要登录的网站一致。</p>
</main>
<script src="`...)
	b = appendURLAttr(b, d.QRJSPath, false)
	b = append(b, `"></script>
<script src="`...)
	b = appendURLAttr(b, d.JSPath, false)
	b = append(b, `"></script>
</body>
</html>
`...)
	return b
}

// loginPageCap is a capacity for d's page that escaping rarely exceeds: the
// literal text (~4.3 KB) plus the values, the Base five times.
func loginPageCap(d *pageData) int {
	n := 4608 + 5*len(d.Base) + len(d.View.State) + len(d.Upcoming) + len(d.RPName) + len(d.RPDomain) +
		len(d.Purpose) + len(d.Frame.Payload) + len(d.View.Code) + len(d.AppLink) + len(d.Message) +
		len(d.CSSPath) + len(d.JSPath) + len(d.QRJSPath)
	for _, s := range d.Data {
		n += len(s) + len("、")
	}
	return n + n/8
}

func appendQRSize(b []byte, elderly bool) []byte {
	if elderly {
		return append(b, "560"...)
	}
	return append(b, "288"...)
}

// htmlEscapes is html/template's htmlReplacementTable by byte: what its
// htmlEscaper (HTML text) and attrEscaper (quoted attribute values) write
// for a plain string's byte, "" for the byte itself. It differs from
// template.HTMLEscapeString, which leaves '+' alone. Byte-wise is the same
// as html/template's rune-wise loop: every replaced rune is ASCII, bytes of
// valid multi-byte runes are all ≥ 0x80, and invalid bytes pass through.
var htmlEscapes = [256]string{
	0:    "\uFFFD",
	'"':  "&#34;",
	'&':  "&amp;",
	'\'': "&#39;",
	'+':  "&#43;",
	'<':  "&lt;",
	'>':  "&gt;",
}

// appendHTMLEscaped appends s as html/template writes a string in HTML text
// or in a quoted attribute value.
func appendHTMLEscaped(b []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); i++ {
		if r := htmlEscapes[s[i]]; r != "" {
			b = append(b, s[last:i]...)
			b = append(b, r...)
			last = i + 1
		}
	}
	return append(b, s[last:]...)
}

// urlClass classifies a byte for appendURLAttr.
const (
	urlEncode  byte = iota // percent-encoded by the normalizer
	urlKeep                // kept by the normalizer, no HTML escape needed
	urlEntity              // kept by the normalizer, then HTML-escaped ('&', '+')
	urlPercent             // kept if it starts a valid escape, else encoded
)

// urlClasses is html/template's urlNormalizer (processURLOnto with norm)
// followed by its attrEscaper, by byte. After the normalizer only & and +
// of the HTML specials remain: both quotes, <, > and NUL are
// percent-encoded.
var urlClasses = func() (t [256]byte) {
	for c := range 256 {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("!#$*,/:;=?@[]-._~", byte(c)) >= 0:
			t[c] = urlKeep
		case c == '&' || c == '+':
			t[c] = urlEntity
		case c == '%':
			t[c] = urlPercent
		}
	}
	return t
}()

// appendURLAttr appends s as html/template writes a value at the start of a
// quoted URL attribute: {{s | _html_template_urlfilter |
// _html_template_urlnormalizer | _html_template_attrescaper}}. typed is
// for a template.URL, which the filter lets through.
func appendURLAttr(b []byte, s string, typed bool) []byte {
	if !typed && !isSafeURL(s) {
		s = "#ZgotmplZ" // html/template's "#" + filterFailsafe
	}
	const hex = "0123456789abcdef"
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch urlClasses[c] {
		case urlKeep:
			continue
		case urlPercent:
			if i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]) {
				continue
			}
		case urlEntity:
			b = append(b, s[last:i]...)
			b = append(b, htmlEscapes[c]...)
			last = i + 1
			continue
		}
		b = append(b, s[last:i]...)
		b = append(b, '%', hex[c>>4], hex[c&0xf])
		last = i + 1
	}
	return append(b, s[last:]...)
}

// isSafeURL is html/template's: a relative URL or one with a scheme of
// http, https or mailto (compared with strings.EqualFold, as there).
func isSafeURL(s string) bool {
	if protocol, _, ok := strings.Cut(s, ":"); ok && !strings.Contains(protocol, "/") {
		if !strings.EqualFold(protocol, "http") && !strings.EqualFold(protocol, "https") && !strings.EqualFold(protocol, "mailto") {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
