package wallet

import (
	"errors"
	"net/http"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/storage"
)

var (
	errBadRequest     = errors.New("wallet: bad request")
	errTooLarge       = errors.New("wallet: body too large")
	errNoLiveness     = errors.New("wallet: no liveness verifier configured")
	errLivenessFailed = errors.New("wallet: liveness evidence refused")
	errNoSuchSignIn   = errors.New("wallet: no such sign-in")
)

// errBody is the wire form of every wallet error: a fixed code and a fixed
// zh-CN message the app may show; details go to the log only.
type errBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// wire maps an error to its status and body, in one place.
func wire(err error) (int, errBody) {
	type m = errBody
	switch {
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, card.ErrUnavailable):
		return 503, m{"temporarily_unavailable", "服务暂时不可用，请稍后再试"}
	case errors.Is(err, errTooLarge):
		return 413, m{"invalid_request", "请求过大"}
	case errors.Is(err, ErrBadProof):
		return 401, m{"invalid_proof", "设备验证失败，请重新打开 App 后再试"}
	case errors.Is(err, card.ErrAuthFailed), errors.Is(err, card.ErrMismatch):
		// Unknown card, wrong PIN and locked PIN look the same.
		return 401, m{"auth_failed", "卡号或密码错误，或密码已锁定"}
	case errors.Is(err, card.ErrMustChangePIN):
		return 403, m{"pin_change_required", "请先修改初始密码"}
	case errors.Is(err, card.ErrWeakPIN):
		return 400, m{"weak_pin", "新密码过于简单，请避免连续、重复数字和出生日期"}
	case errors.Is(err, qrlogin.ErrHolderInactive), errors.Is(err, card.ErrForbiddenTransition):
		return 403, m{"card_inactive", "社保卡或电子社保卡状态异常，请到服务网点办理"}
	case errors.Is(err, card.ErrExists):
		return 409, m{"already_exists", "该社保卡已申领电子社保卡"}
	case errors.Is(err, card.ErrNotFound), errors.Is(err, storage.ErrNotFound):
		return 404, m{"not_found", "记录不存在"}
	case errors.Is(err, card.ErrDeviceLimit):
		return 409, m{"device_limit", "绑定设备已达上限"}
	case errors.Is(err, qrlogin.ErrRateLimited):
		return 429, m{"slow_down", "操作过于频繁，请稍后再试"}
	case errors.Is(err, qrlogin.ErrFrameExpired):
		return 400, m{"qr_expired", "二维码已过期，请扫描网页上的最新二维码"}
	case errors.Is(err, qrlogin.ErrBadPayload), errors.Is(err, qrlogin.ErrFrameInvalid), errors.Is(err, qrlogin.ErrBadCode):
		return 400, m{"qr_invalid", "无法识别的二维码，请确认是电子社保卡登录二维码"}
	case errors.Is(err, qrlogin.ErrNotFound):
		return 404, m{"qr_not_found", "登录请求不存在或已过期"}
	case errors.Is(err, qrlogin.ErrAlreadyScanned), errors.Is(err, qrlogin.ErrNotScanner), errors.Is(err, qrlogin.ErrFinished):
		return 409, m{"qr_used", "该二维码已被使用"}
	case errors.Is(err, qrlogin.ErrWrongNumber):
		return 409, m{"wrong_number", "数字不一致，本次登录已取消。如非本人操作，请注意账户安全"}
	case errors.Is(err, qrlogin.ErrACRNotMet), errors.Is(err, errNoLiveness):
		return 403, m{"face_required", "该业务需要刷脸认证"}
	case errors.Is(err, errLivenessFailed):
		return 401, m{"liveness_failed", "刷脸认证未通过"}
	case errors.Is(err, errNoSuchSignIn):
		return 404, m{"not_found", "该登录记录不存在或已结束"}
	case errors.Is(err, entitlement.ErrNotFaceLevel), errors.Is(err, entitlement.ErrLiveness):
		return 401, m{"liveness_failed", "刷脸认证未通过"}
	case errors.Is(err, entitlement.ErrCardNotLive):
		return 403, m{"card_inactive", "社保卡或电子社保卡状态异常，请到服务网点办理"}
	case errors.Is(err, entitlement.ErrNoDelegation):
		return 403, m{"no_authorisation", "您没有该持卡人的有效授权"}
	case errors.Is(err, entitlement.ErrNothingToCertify):
		return 404, m{"nothing_to_certify", "您当前没有需要认证的待遇"}
	case errors.Is(err, entitlement.ErrUnavailable):
		return 503, m{"temporarily_unavailable", "服务暂时不可用，请稍后再试"}
	case errors.Is(err, errCodeUsed):
		return 404, m{"code_invalid", "展码无效或已使用"}
	case errors.Is(err, errUnauthenticated):
		return 401, m{"invalid_token", "需要认证"}
	case errors.Is(err, errForbidden):
		return 403, m{"insufficient_scope", "无权访问"}
	case errors.Is(err, errBadRequest), errors.Is(err, card.ErrInvalidRequest), errors.Is(err, card.ErrInvalidCardNumber),
		errors.Is(err, card.ErrInvalidSSN), errors.Is(err, card.ErrInvalidName):
		return 400, m{"invalid_request", "请求格式错误"}
	}
	return 500, m{"server_error", "系统繁忙，请稍后再试"}
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, body := wire(err)
	lvl := h.log.Info
	if code >= 500 {
		lvl = h.log.Error
	}
	lvl("wallet request failed", "path", r.URL.Path, "code", code, "err", err)
	writeJSON(w, code, body)
}
