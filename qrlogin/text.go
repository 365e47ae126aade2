package qrlogin

import (
	"net"
	"net/http"
	"strings"
)

// purposeText is what the phone shows for a registered purpose.
func purposeText(p string) string {
	switch p {
	case "", "login":
		return "登录网上服务平台"
	case "pension_certification":
		return "养老金待遇资格认证"
	case "entitlement_query":
		return "查询待遇资格状态"
	}
	return "办理业务（" + p + "）"
}

// scopeTexts lists the requested data in plain Chinese, once each.
func scopeTexts(scopes []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range scopes {
		t := scopeText(s)
		if t != "" && !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

func scopeText(s string) string {
	switch s {
	case "openid":
		return "您在该网站的用户标识"
	case "profile":
		return "姓名"
	case "essc.card":
		return "社保卡状态、发卡地区和电子社保卡等级"
	case "essc.ssn":
		return "完整的社会保障号码"
	case "essc.entitlement":
		return "待遇资格认证状态"
	case "offline_access":
		return "保持登录（长期访问）"
	}
	return "其他数据（" + s + "）"
}

// region names where the browser is. A GeoIP database is a deployment
// choice; without one only loopback and private ranges are named.
func region(ip string) string {
	a := net.ParseIP(ip)
	switch {
	case a == nil:
		return "未知"
	case a.IsLoopback():
		return "本机"
	case a.IsPrivate():
		return "内部网络"
	}
	return "未知地区"
}

// deviceSummary reduces a User-Agent to "系统 / 浏览器" (never stored whole).
func deviceSummary(ua string) string {
	os := "未知系统"
	for _, c := range []struct{ needle, name string }{
		{"Windows", "Windows"}, {"iPhone", "iPhone"}, {"iPad", "iPad"}, {"Android", "Android"},
		{"Mac OS X", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, c.needle) {
			os = c.name
			break
		}
	}
	br := "未知浏览器"
	for _, c := range []struct{ needle, name string }{
		{"Edg/", "Edge"}, {"Firefox/", "Firefox"}, {"HeadlessChrome/", "Chrome（无界面）"}, {"Chrome/", "Chrome"},
		{"Safari/", "Safari"}, {"Go-http-client", "程序客户端"},
	} {
		if strings.Contains(ua, c.needle) {
			br = c.name
			break
		}
	}
	return os + " / " + br
}

func remoteHost(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}
