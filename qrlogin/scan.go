package qrlogin

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/essc-project/essc/storage"
)

// Device identifies the authenticated phone calling the app-side methods.
// The wallet has already verified its device-key proof and looked the
// binding up in the registry.
type Device struct {
	HolderID string
	ECardID  string
	DeviceID string
}

// ScanView is what the phone shows before the holder confirms: who asks
// (from the client registry, never from the request), why, what data, from
// where, when, and three numbers to match against the browser.
type ScanView struct {
	Txn           string    `json:"txn"`
	ClientID      string    `json:"client_id"`
	RPName        string    `json:"rp_name"`
	RPDomain      string    `json:"rp_domain"`
	Purpose       string    `json:"purpose"`
	PurposeText   string    `json:"purpose_text"`
	RequestedData []string  `json:"requested_data"` // plain Chinese
	ConsentScopes []string  `json:"consent_scopes,omitempty"`
	BrowserIP     string    `json:"browser_ip"`
	BrowserRegion string    `json:"browser_region"`
	BrowserDevice string    `json:"browser_device"`
	RequestedAt   time.Time `json:"requested_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	Candidates    []int     `json:"candidates"`
	RequiredACR   string    `json:"required_acr"` // urn:essc:acr:face when the RP demands liveness
}

// ResolveCode turns an elderly-mode fallback code typed into the app into a
// payload for Scan (single use).
func (s *Service) ResolveCode(ctx context.Context, dev Device, code string) (string, error) {
	if err := s.allow(ctx, "qr:scan:"+dev.DeviceID, s.cfg.Limits.ScansPerDevice, time.Minute); err != nil {
		return "", err
	}
	if len(code) != 8 {
		return "", ErrBadCode
	}
	b, err := s.cfg.Store.TakeOnce(ctx, "qr-code", code)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return "", ErrBadCode
		}
		return "", err
	}
	t, d, err := s.load(ctx, string(b))
	if err != nil {
		return "", err
	}
	// A typed code stands for a fresh frame of its own transaction.
	e := int(s.now().Sub(t.CreatedAt) / time.Second)
	e -= e % int(ElderlyFrameInterval/time.Second)
	return Frame{Txn: t.ID, Elapsed: e, MAC: frameMAC(s.cfg.FrameKey, t.ID, e, d.Req.ClientID)}.String(), nil
}

// Scan moves a pending transaction to scanned for dev (one phone per
// transaction). It checks the frame MAC and freshness, the rate limit of the
// device and, live, the holder's card and e-card: an inactive card (error
// wrapping ErrHolderInactive) denies the transaction with ReasonCardInvalid
// so the browser shows why, instead of waiting.
func (s *Service) Scan(ctx context.Context, dev Device, payload string) (ScanView, error) {
	if err := s.allow(ctx, "qr:scan:"+dev.DeviceID, s.cfg.Limits.ScansPerDevice, time.Minute); err != nil {
		return ScanView{}, err
	}
	f, err := ParsePayload(payload)
	if err != nil {
		return ScanView{}, err
	}
	t, d, err := s.load(ctx, f.Txn)
	if err != nil {
		return ScanView{}, err
	}
	if !hmac.Equal(f.MAC, frameMAC(s.cfg.FrameKey, t.ID, f.Elapsed, d.Req.ClientID)) {
		return ScanView{}, ErrFrameInvalid
	}
	window := FrameWindow
	if d.Elderly {
		window = ElderlyFrameWindow
	}
	shown := t.CreatedAt.Add(time.Duration(f.Elapsed) * time.Second)
	now := s.now()
	if now.Sub(shown) > window || shown.Sub(now) > clockSkew {
		return ScanView{}, ErrFrameExpired
	}
	if !d.live(now) {
		return ScanView{}, ErrNotFound
	}
	if t.State != StatePending {
		return ScanView{}, ErrAlreadyScanned
	}
	if err := s.checkHolder(ctx, dev); err != nil {
		if errors.Is(err, ErrHolderInactive) {
			// The live QR was scanned with a lost or cancelled card: the
			// browser shows "card invalid" instead of waiting for nothing.
			if derr := s.deny(ctx, t.ID, t.ClientID, StatePending, ReasonCardInvalid); derr != nil && !errors.Is(derr, ErrFinished) {
				return ScanView{}, errors.Join(err, derr)
			}
		}
		return ScanView{}, err
	}
	var consent []string
	if s.cfg.Consent != nil {
		if consent, err = s.cfg.Consent.NeedConsent(ctx, dev.HolderID, d.Req); err != nil {
			return ScanView{}, err
		}
	}
	cands := candidates(d.Number)
	t, err = s.cfg.Store.TransitionQRFrom(ctx, t, StateScanned, func(q *storage.QRTransaction) error {
		return updateDataFrom(q, t.Data, d, func(cur *txnData) {
			cur.Scanner = &scanner{HolderID: dev.HolderID, ECardID: dev.ECardID, DeviceID: dev.DeviceID}
			cur.Candidates, cur.Consent = cands, consent
			d = *cur
		})
	})
	if err != nil {
		if errors.Is(err, storage.ErrStateConflict) {
			return ScanView{}, ErrAlreadyScanned
		}
		return ScanView{}, mapConflict(err)
	}
	s.observe(ctx, t.ID, t.ClientID, StatePending, StateScanned, map[string]string{"device": dev.DeviceID})
	v := ScanView{
		Txn: t.ID, ClientID: d.Req.ClientID, RPName: d.Req.ClientName, RPDomain: d.Req.ClientDomain,
		Purpose: d.Req.Purpose, PurposeText: purposeText(d.Req.Purpose), RequestedData: scopeTexts(d.Req.Scopes),
		ConsentScopes: consent, BrowserIP: d.BrowserIP, BrowserRegion: region(d.BrowserIP), BrowserDevice: d.BrowserUA,
		RequestedAt: d.Req.RequestedAt, ExpiresAt: d.Deadline, Candidates: cands, RequiredACR: ACRPIN,
	}
	if d.Req.RequiresFace() {
		v.RequiredACR = ACRFace
	}
	return v, nil
}

// Confirm moves a scanned transaction to approved. The wallet has verified
// the PIN or liveness (a.ACR, a.AMR) and the device's signature over the
// approval before calling. Only the device that scanned may confirm; a wrong
// number denies the transaction (an attacker relaying a QR cannot guess the
// number the victim's browser shows); an approval below the relying party's
// acr_values is refused without changing state.
func (s *Service) Confirm(ctx context.Context, dev Device, txn string, number int, a Approval) error {
	t, d, err := s.load(ctx, txn)
	if err != nil {
		return err
	}
	if !d.live(s.now()) {
		return ErrNotFound
	}
	if t.State != StateScanned {
		return ErrFinished
	}
	if d.Scanner == nil || d.Scanner.DeviceID != dev.DeviceID || d.Scanner.HolderID != dev.HolderID {
		return ErrNotScanner
	}
	if number != d.Number {
		if err := s.deny(ctx, txn, t.ClientID, StateScanned, ReasonWrongNumber); err != nil {
			return err
		}
		return ErrWrongNumber
	}
	if !acrSatisfies(a.ACR, d.Req.ACRValues) {
		return fmt.Errorf("%w: have %s, want one of %v", ErrACRNotMet, a.ACR, d.Req.ACRValues)
	}
	if err := s.checkHolder(ctx, dev); err != nil {
		if errors.Is(err, ErrHolderInactive) {
			// Card reported lost between scan and confirm.
			if derr := s.deny(ctx, txn, t.ClientID, StateScanned, ReasonCardInvalid); derr != nil && !errors.Is(derr, ErrFinished) {
				return errors.Join(err, derr)
			}
		}
		return err
	}
	a.HolderID, a.ECardID, a.DeviceID = dev.HolderID, dev.ECardID, dev.DeviceID
	a.Purpose = d.Req.Purpose
	if a.AuthTime.IsZero() {
		a.AuthTime = s.now()
	}
	// Consent is what the phone showed; the app confirms all of it or denies.
	a.Consented = d.Consent
	_, err = s.cfg.Store.TransitionQRFrom(ctx, t, StateApproved, func(q *storage.QRTransaction) error {
		return updateDataFrom(q, t.Data, d, func(cur *txnData) { cur.Approval = &a })
	})
	if err != nil {
		return mapConflict(err)
	}
	s.observe(ctx, txn, t.ClientID, StateScanned, StateApproved, map[string]string{"acr": a.ACR})
	return nil
}

// Deny ends a scanned transaction at the holder's request ("not me" before
// confirming, or the wrong relying party).
func (s *Service) Deny(ctx context.Context, dev Device, txn string) error {
	t, d, err := s.load(ctx, txn)
	if err != nil {
		return err
	}
	if t.State != StateScanned {
		return ErrFinished
	}
	if d.Scanner == nil || d.Scanner.DeviceID != dev.DeviceID {
		return ErrNotScanner
	}
	return s.deny(ctx, txn, t.ClientID, StateScanned, ReasonHolder)
}

// acrSatisfies: face satisfies everything; pin satisfies a request without
// acr_values or one that lists pin.
func acrSatisfies(have string, want []string) bool {
	switch have {
	case ACRFace:
		return true
	case ACRPIN:
		return len(want) == 0 || slices.Contains(want, ACRPIN)
	}
	return false
}

// candidates returns the correct number and two distinct decoys, shuffled.
func candidates(correct int) []int {
	out := []int{correct}
	for len(out) < 3 {
		n := 10 + randInt(90)
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	for i := len(out) - 1; i > 0; i-- {
		j := randInt(i + 1)
		out[i], out[j] = out[j], out[i]
	}
	return out
}

type heldCheckKey struct{}

type heldCheck struct{ holderID, ecardID string }

// WithHolderChecked marks ctx as carrying a status check of the holder's
// e-card and card that the caller (the app API's device authentication)
// has just made from the registry and passed; Scan and Confirm in the same
// request then do not read the registry again for it.
func WithHolderChecked(ctx context.Context, holderID, ecardID string) context.Context {
	return context.WithValue(ctx, heldCheckKey{}, heldCheck{holderID, ecardID})
}

// checkHolder is Holders.CheckHolder unless ctx already carries a passed
// check for exactly this holder and e-card.
func (s *Service) checkHolder(ctx context.Context, dev Device) error {
	if c, ok := ctx.Value(heldCheckKey{}).(heldCheck); ok && c.holderID == dev.HolderID && c.ecardID == dev.ECardID {
		return nil
	}
	return s.cfg.Holders.CheckHolder(ctx, dev.HolderID, dev.ECardID)
}
