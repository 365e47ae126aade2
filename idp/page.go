package idp

import (
	"crypto/rand"
	"encoding/hex"
	"html/template"
	"net/http"
)

// Fixed user-facing messages (zh-CN). Details go to the log with the request
// id shown on the page; err.Error() is never rendered (CONVENTIONS 5).
const (
	msgBadRequest  = "登录请求无效，请返回原网站重新发起登录。"
	msgUnavailable = "服务暂时不可用，请稍后重试。"
	msgLoggedOut   = "您已安全退出。"
	msgServerError = "系统繁忙，请稍后重试。"
)

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>电子社保卡</title></head>
<body><main><h1>电子社保卡</h1><p>{{.Msg}}</p>{{if .ID}}<p><small>请求编号：{{.ID}}</small></p>{{end}}</main></body></html>`))

// page renders a fixed message with status and returns the request id it
// shows (log it with the details).
func page(w http.ResponseWriter, status int, msg string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'")
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, struct{ Msg, ID string }{msg, id})
	return id
}
