// Package client is the e-card app's side of the wallet API: it holds the
// device key and signs every request with a device-key proof. cmd/ecard,
// the tests and the load tool use it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/signing"
)

// Client talks to one essc server as one device.
type Client struct {
	Base string       // server base URL, e.g. http://127.0.0.1:8080
	Key  *signing.Key // the device's SM2 key
	HTTP *http.Client // default http.DefaultClient
	Now  func() time.Time
}

// Error is a wallet API error answer.
type Error struct {
	Status  int
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// do sends one proof-carrying request. embedJWK puts the device JWK in the
// proof (apply, PIN change and binding before a device is bound).
func (c *Client) do(ctx context.Context, path string, in, out any, embedJWK bool) error {
	return c.send(ctx, path, wallet.NewJTI(), in, out, embedJWK)
}

// doWith builds the body from the proof's jti (a body bound to its request).
func (c *Client) doWith(ctx context.Context, path string, mk func(jti string) (any, error), out any) error {
	jti := wallet.NewJTI()
	in, err := mk(jti)
	if err != nil {
		return err
	}
	return c.send(ctx, path, jti, in, out, false)
}

func (c *Client) send(ctx context.Context, path, jti string, in, out any, embedJWK bool) error {
	body := []byte("{}")
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	url := strings.TrimSuffix(c.Base, "/") + path
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	proof, err := wallet.SignProofJTI(c.Key, http.MethodPost, url, body, now(), embedJWK, jti)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(wallet.ProofHeader, proof)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		json.Unmarshal(b, e)
		return e
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Apply applies for the e-card, binding this device.
func (c *Client) Apply(ctx context.Context, r wallet.ApplyRequest) (wallet.ApplyResponse, error) {
	var out wallet.ApplyResponse
	return out, c.do(ctx, "/wallet/v1/ecards", r, &out, true)
}

// ChangePIN changes the card PIN (needed before anything else when the PIN
// is still the initial 123456).
func (c *Client) ChangePIN(ctx context.Context, cardNumber, oldPIN, newPIN string) error {
	return c.do(ctx, "/wallet/v1/pin", wallet.PINChangeRequest{CardNumber: cardNumber, OldPIN: oldPIN, NewPIN: newPIN}, nil, true)
}

// Scan scans a QR payload (essc://login?...).
func (c *Client) Scan(ctx context.Context, payload string) (qrlogin.ScanView, error) {
	var v qrlogin.ScanView
	return v, c.do(ctx, "/wallet/v1/qr/scan", wallet.ScanRequest{Payload: payload}, &v, false)
}

// ScanCode uses the 8-character code the elderly-mode page shows.
func (c *Client) ScanCode(ctx context.Context, code string) (qrlogin.ScanView, error) {
	var v qrlogin.ScanView
	return v, c.do(ctx, "/wallet/v1/qr/scan", wallet.ScanRequest{Code: code}, &v, false)
}

// Confirm approves a scanned login with the number the browser shows and the PIN.
func (c *Client) Confirm(ctx context.Context, txn string, number int, pin string) error {
	return c.do(ctx, "/wallet/v1/qr/confirm", wallet.ConfirmRequest{Txn: txn, Number: number, PIN: pin}, nil, false)
}

// ConfirmFace approves with liveness evidence (face-level acr).
func (c *Client) ConfirmFace(ctx context.Context, txn string, number int, evidence string) error {
	return c.do(ctx, "/wallet/v1/qr/confirm", wallet.ConfirmRequest{Txn: txn, Number: number, Liveness: evidence}, nil, false)
}

// Deny refuses a scanned login.
func (c *Client) Deny(ctx context.Context, txn string) error {
	return c.do(ctx, "/wallet/v1/qr/deny", wallet.TxnRequest{Txn: txn}, nil, false)
}

// ReportLoss reports the card lost.
func (c *Client) ReportLoss(ctx context.Context) error {
	return c.do(ctx, "/wallet/v1/report-loss", nil, nil, false)
}

// PresentationCode gets a single-use 60 s code for a counter.
func (c *Client) PresentationCode(ctx context.Context) (wallet.PresentationCode, error) {
	var p wallet.PresentationCode
	return p, c.do(ctx, "/wallet/v1/presentation-codes", nil, &p, false)
}

// Notices lists the holder's sign-ins.
func (c *Client) Notices(ctx context.Context) ([]wallet.Notice, error) {
	var out struct {
		Notices []wallet.Notice `json:"notices"`
	}
	return out.Notices, c.do(ctx, "/wallet/v1/notices", nil, &out, false)
}

// NotMe ends a sign-in the holder does not recognise.
func (c *Client) NotMe(ctx context.Context, sid string) error {
	return c.do(ctx, "/wallet/v1/notices/not-me", wallet.NotMeRequest{SID: sid}, nil, false)
}

// BindDevice binds this (new) device to the holder's live e-card.
func (c *Client) BindDevice(ctx context.Context, cardNumber, pin string) (ecardID, deviceID string, err error) {
	var out struct {
		ECardID  string `json:"ecard_id"`
		DeviceID string `json:"device_id"`
	}
	err = c.do(ctx, "/wallet/v1/devices", wallet.BindRequest{CardNumber: cardNumber, PIN: pin}, &out, true)
	return out.ECardID, out.DeviceID, err
}

// UnbindDevice unbinds one of the holder's devices (e.g. a lost phone).
func (c *Client) UnbindDevice(ctx context.Context, deviceID string) error {
	return c.do(ctx, "/wallet/v1/devices/unbind", wallet.UnbindRequest{DeviceID: deviceID}, nil, false)
}

// Certify runs the eligibility check in the app with liveness evidence made
// by evidence(challenge) — the challenge is this request's proof jti.
func (c *Client) Certify(ctx context.Context, evidence func(challenge string) (string, error)) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.doWith(ctx, "/wallet/v1/certify", func(jti string) (any, error) {
		ev, err := evidence(jti)
		return wallet.CertifyRequest{Liveness: ev}, err
	}, &out)
	return out, err
}

// CertifyFamily starts the eligibility check for the holder of cardNumber
// (this device's holder must have a registered authorisation); evidence is
// the holder's own liveness for their e-card, bound to the request's jti.
func (c *Client) CertifyFamily(ctx context.Context, cardNumber string, evidence func(challenge string) (string, error)) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.doWith(ctx, "/wallet/v1/certify/family", func(jti string) (any, error) {
		ev, err := evidence(jti)
		return wallet.FamilyCertifyRequest{CardNumber: cardNumber, Liveness: ev}, err
	}, &out)
	return out, err
}
