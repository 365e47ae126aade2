package main

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/emmansun/gmsm/sm3"

	"github.com/essc-project/essc/idp"
	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/storage"
	"github.com/essc-project/essc/storage/memory"
)

// This file adapts qrlogin (which never imports idp) to the provider: the
// provider's LoginStep starts a QR transaction, and an approved transaction
// is completed by the provider. The adapters are plain field copies.

// purposeCertification is the registered purpose of the eligibility check.
const purposeCertification = "pension_certification"

// qrBridge implements idp.LoginStep and the qrlogin interfaces over the app.
type qrBridge struct {
	a  *app
	qr *qrlogin.Service
	h  *qrlogin.Handler
}

var (
	_ idp.LoginStep          = (*qrBridge)(nil)
	_ qrlogin.Completer      = (*qrBridge)(nil)
	_ qrlogin.HolderCheck    = (*qrBridge)(nil)
	_ qrlogin.ConsentChecker = (*qrBridge)(nil)
	_ qrlogin.Observer       = (*qrBridge)(nil)
	_ wallet.Notices         = (*qrBridge)(nil)
)

// loginStep builds the QR-Link v1 login step.
func (a *app) loginStep() (idp.LoginStep, error) {
	b := &qrBridge{a: a}
	local, err := a.localLimits()
	if err != nil {
		return nil, err
	}
	qr, err := qrlogin.New(qrlogin.Config{
		Store: a.sessions, Holders: b, Completer: b, Consent: b, Observer: b,
		FrameKey:      derive(a.secrets.TokenKey, "essc qr-link v1 frame key"),
		SecureCookies: a.secureCookies(),
		ClientIP:      a.clientIP,
		Limits:        qrlogin.Limits{TxnPerIP: a.cfg.QR.TxnPerIPPerMinute},
		Local:         local,
		Now:           a.now,
		Logger:        a.log,
	})
	if err != nil {
		return nil, err
	}
	b.qr, b.h = qr, qr.Handler()
	a.qr = b
	return b, nil
}

// localLimits counts the QR transactions' per-transaction limits in this
// replica: in the session store when that is in memory, else in a memory
// store of their own (qrlogin.Config.Local).
func (a *app) localLimits() (storage.RateLimiter, error) {
	if _, ok := a.sessions.(*memory.Store); ok {
		return nil, nil
	}
	return memory.New(memory.Config{Now: a.now, Lookup: a.lookupClient, NewSession: idp.NewSession, Logger: a.log})
}

// secureCookies is true unless the issuer is plain http on loopback (the
// embedded default), where browsers would drop Secure cookies.
func (a *app) secureCookies() bool { return !strings.HasPrefix(a.cfg.Issuer, "http://") }

// clientIP believes X-Forwarded-For only from configured trusted proxies.
func (a *app) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil || len(a.trusted) == 0 {
		return host
	}
	trusted := func(ip net.IP) bool {
		for _, n := range a.trusted {
			if n.Contains(ip) {
				return true
			}
		}
		return false
	}
	if !trusted(ip) {
		return host
	}
	hops := strings.Split(r.Header.Get("X-Forwarded-For"), ",")
	for i := len(hops) - 1; i >= 0; i-- { // rightmost untrusted hop is the client
		h := strings.TrimSpace(hops[i])
		if p := net.ParseIP(h); p != nil && !trusted(p) {
			return h
		}
	}
	return host
}

// derive is HMAC-SM3(key, label): independent keys from one stored secret.
func derive(key []byte, label string) []byte {
	m := hmac.New(sm3.New, key)
	m.Write([]byte(label))
	return m.Sum(nil)
}

func (b *qrBridge) StartLogin(w http.ResponseWriter, r *http.Request, req idp.LoginRequest) {
	b.h.Start(w, r, qrlogin.Request{
		Profile: req.Profile, ClientID: req.ClientID, ClientName: req.ClientName, ClientDomain: req.ClientDomain,
		Scopes: req.Scopes, ACRValues: req.ACRValues, MaxAge: req.MaxAge, Prompt: req.Prompt, Purpose: req.Purpose,
		RequestedAt: req.RequestedAt, Pending: req.Pending,
	})
}

func loginRequest(q qrlogin.Request) idp.LoginRequest {
	return idp.LoginRequest{
		Profile: q.Profile, ClientID: q.ClientID, ClientName: q.ClientName, ClientDomain: q.ClientDomain,
		Scopes: q.Scopes, ACRValues: q.ACRValues, MaxAge: q.MaxAge, Prompt: q.Prompt, Purpose: q.Purpose,
		RequestedAt: q.RequestedAt, Pending: q.Pending,
	}
}

func (b *qrBridge) Complete(w http.ResponseWriter, r *http.Request, req qrlogin.Request, ap qrlogin.Approval) {
	b.a.metrics.logins.WithLabelValues("completed").Inc()
	if ap.Purpose == purposeCertification && ap.ACR == qrlogin.ACRFace && b.a.entitlements != nil {
		// The agency portal's certification login (method portal_qr).
		certs, err := b.a.entitlements.Certify(r.Context(), entitlement.CertifyInput{HolderID: ap.HolderID, ECardID: ap.ECardID,
			Method: entitlement.MethodPortalQR, ACR: ap.ACR, AMR: ap.AMR, Challenge: ap.Txn, LivenessEvidence: ap.Evidence})
		if err != nil {
			b.a.log.WarnContext(r.Context(), "certification at login not recorded", "err", err)
		} else {
			b.a.log.InfoContext(r.Context(), "certified at login", "entitlements", len(certs))
		}
	}
	b.a.prov.Complete(w, r, req.Pending, idp.Authentication{
		HolderID: ap.HolderID, ECardID: ap.ECardID, ACR: ap.ACR, AMR: ap.AMR, AuthTime: ap.AuthTime,
		Purpose: ap.Purpose, Consented: ap.Consented, Browser: ap.Browser,
	})
}

func (b *qrBridge) CheckHolder(ctx context.Context, holderID, ecardID string) error {
	err := idp.RegistryDirectory{Registry: b.a.reg}.Check(ctx, holderID, ecardID)
	if errors.Is(err, idp.ErrInactive) {
		return fmt.Errorf("%w: %w", qrlogin.ErrHolderInactive, err)
	}
	return err
}

func (b *qrBridge) NeedConsent(ctx context.Context, holderID string, req qrlogin.Request) ([]string, error) {
	return b.a.prov.NeedConsent(ctx, holderID, loginRequest(req))
}

// SignIns lists the holder's sign-ins for the app's login notices, with the
// relying party's registered name and domain.
func (b *qrBridge) SignIns(ctx context.Context, holderID string) ([]wallet.Notice, error) {
	sis, err := b.a.reg.SignInsOf(ctx, holderID)
	if err != nil {
		return nil, err
	}
	out := make([]wallet.Notice, 0, len(sis))
	for _, si := range sis {
		n := wallet.Notice{SID: si.SID, ClientID: si.ClientID, ACR: si.ACR, Browser: si.Browser, At: si.At}
		if c, err := b.a.reg.Client(ctx, si.ClientID); err == nil {
			n.RPName, n.RPDomain = c.Name, c.Domain
		}
		out = append(out, n)
	}
	return out, nil
}

// NotMe ends one sign-in the holder does not recognise: tokens revoked,
// back-channel logout sent, audited.
func (b *qrBridge) NotMe(ctx context.Context, holderID, sid string) error {
	if err := b.a.prov.EndSignIn(ctx, holderID, sid); err != nil {
		return err
	}
	b.a.metrics.logins.WithLabelValues("not_me").Inc()
	details, _ := json.Marshal(map[string]string{"sid": sid})
	_, err := b.a.reg.AppendAudit(ctx, storage.AuditEntry{Actor: "holder:" + holderID, Action: "login.not_me", Target: "sid:" + sid, Details: details})
	return err
}

// Transition counts every transition and audits those that involve a holder.
func (b *qrBridge) Transition(ctx context.Context, txn, clientID, from, to string, attrs map[string]string) {
	b.a.metrics.qrTransition.WithLabelValues(from, to).Inc()
	if to == qrlogin.StateDenied {
		b.a.metrics.logins.WithLabelValues("denied").Inc()
	}
	if from == "" {
		return // a browser opened the page: no holder involved, not audited
	}
	details, _ := json.Marshal(attrs)
	if _, err := b.a.reg.AppendAudit(ctx, storage.AuditEntry{
		Actor: clientID, Action: "qr." + to, Target: "qr:" + txn[:8], Details: details,
	}); err != nil {
		b.a.log.ErrorContext(ctx, "audit qr transition", "err", err, "to", to)
	}
}
