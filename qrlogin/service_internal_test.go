package qrlogin

import (
	"slices"
	"strings"
	"testing"
)

func TestNewValidates(t *testing.T) {
	for name, cfg := range map[string]Config{
		"fail/empty":           {},
		"fail/short-frame-key": {FrameKey: make([]byte, 31)},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCandidates(t *testing.T) {
	for range 200 {
		c := candidates(42)
		if len(c) != 3 || !slices.Contains(c, 42) {
			t.Fatalf("candidates %v", c)
		}
		for _, n := range c {
			if n < 10 || n > 99 {
				t.Fatalf("not two digits: %v", c)
			}
		}
		if c[0] == c[1] || c[1] == c[2] || c[0] == c[2] {
			t.Fatalf("repeated: %v", c)
		}
	}
}

func TestACRSatisfies(t *testing.T) {
	for _, c := range []struct {
		name string
		have string
		want []string
		ok   bool
	}{
		{"ok/pin-no-acr", ACRPIN, nil, true},
		{"ok/pin-listed", ACRPIN, []string{ACRFace, ACRPIN}, true},
		{"ok/face-for-pin", ACRFace, []string{ACRPIN}, true},
		{"fail/pin-for-face", ACRPIN, []string{ACRFace}, false},
		{"fail/unknown", "urn:other", nil, false},
		{"fail/empty", "", nil, false},
	} {
		if got := acrSatisfies(c.have, c.want); got != c.ok {
			t.Errorf("%s: %v", c.name, got)
		}
	}
}

func TestDeviceSummaryAndRegion(t *testing.T) {
	for ua, want := range map[string]string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36":               "Windows / Chrome",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Safari/604.1": "iPhone / Safari",
		"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0":                                "Linux / Firefox",
		"":                          "未知系统 / 未知浏览器",
		"<script>alert(1)</script>": "未知系统 / 未知浏览器", // never echoed
	} {
		if got := deviceSummary(ua); got != want {
			t.Errorf("%q: %q, want %q", ua, got, want)
		}
	}
	for ip, want := range map[string]string{"127.0.0.1": "本机", "10.1.2.3": "内部网络", "203.0.113.9": "未知地区", "x": "未知"} {
		if got := region(ip); got != want {
			t.Errorf("%s: %s", ip, got)
		}
	}
	if got := scopeTexts([]string{"openid", "profile", "profile", "weird"}); strings.Join(got, "|") != "您在该网站的用户标识|姓名|其他数据（weird）" {
		t.Errorf("scope texts %v", got)
	}
}
