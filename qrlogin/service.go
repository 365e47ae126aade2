package qrlogin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"time"

	"github.com/essc-project/essc/storage"
	json "github.com/goccy/go-json" // records this package wrote itself (txnData): 2.7× faster to decode
)

// Transaction states (DESIGN.md §7): pending → scanned → approved → consumed,
// with the exits denied, expired (the store's TTL) and cancelled.
const (
	StatePending   = "pending"
	StateScanned   = "scanned"
	StateApproved  = "approved"
	StateConsumed  = "consumed"
	StateDenied    = "denied"
	StateCancelled = "cancelled"
	StateExpired   = "expired" // reported for a transaction the store no longer has
)

// ACR values of DESIGN.md §5.
const (
	ACRPIN  = "urn:essc:acr:pin"
	ACRFace = "urn:essc:acr:face"
)

// Errors of the app side. They are values the wallet maps to its wire errors;
// the browser side never shows them.
var (
	ErrNotFound       = errors.New("qrlogin: no such transaction")      // unknown or expired
	ErrFrameInvalid   = errors.New("qrlogin: frame MAC does not match") // forged or for another transaction
	ErrFrameExpired   = errors.New("qrlogin: frame too old")            // a screenshot replayed later
	ErrAlreadyScanned = errors.New("qrlogin: transaction already scanned")
	ErrNotScanner     = errors.New("qrlogin: confirmation from a device that did not scan")
	ErrWrongNumber    = errors.New("qrlogin: wrong number picked: transaction denied")
	ErrACRNotMet      = errors.New("qrlogin: authentication level below what the relying party requires")
	ErrFinished       = errors.New("qrlogin: transaction already finished") // replayed confirm/deny
	ErrRateLimited    = errors.New("qrlogin: too many attempts")
	ErrHolderInactive = errors.New("qrlogin: card or e-card not active")
	ErrBadCode        = errors.New("qrlogin: unknown fallback code")
)

// Store is the state the service needs (storage.Sessions satisfies it).
type Store interface {
	storage.QRStore
	storage.RateLimiter
	storage.OnceStore
}

// HolderCheck re-checks, live, that the holder's e-card and card are active
// and usable (PIN changed). It returns an error wrapping ErrHolderInactive
// when they are not, or a storage error.
type HolderCheck interface {
	CheckHolder(ctx context.Context, holderID, ecardID string) error
}

// ConsentChecker tells which of the requested scopes the holder must
// confirm on the phone (nil: none).
type ConsentChecker interface {
	NeedConsent(ctx context.Context, holderID string, req Request) ([]string, error)
}

// Completer finishes the OpenID authorize response once the browser has
// collected an approved transaction (it writes the redirect to w).
type Completer interface {
	Complete(w http.ResponseWriter, r *http.Request, req Request, a Approval)
}

// Observer receives every state transition (audit log, metrics). Optional.
type Observer interface {
	Transition(ctx context.Context, txn, clientID, from, to string, attrs map[string]string)
}

// Request is the validated authorize request the login is for, as the OIDC
// side hands it over. Names and domains come from the client registry.
type Request struct {
	Profile      string        `json:"p"`
	ClientID     string        `json:"cid"`
	ClientName   string        `json:"cn"`
	ClientDomain string        `json:"cd"`
	Scopes       []string      `json:"s,omitempty"`
	ACRValues    []string      `json:"acr,omitempty"`
	MaxAge       time.Duration `json:"ma"`
	Prompt       string        `json:"pr,omitempty"`
	Purpose      string        `json:"pu,omitempty"`
	RequestedAt  time.Time     `json:"at"`
	Pending      []byte        `json:"pd"` // the OIDC side's integrity-protected pending request
}

// RequiresFace reports whether the relying party accepts only face-level
// authentication (its acr_values name face and not pin).
func (r Request) RequiresFace() bool {
	return len(r.ACRValues) > 0 && !slices.Contains(r.ACRValues, ACRPIN) && slices.Contains(r.ACRValues, ACRFace)
}

// Approval is what the holder confirmed on the phone.
type Approval struct {
	HolderID  string    `json:"h"`
	ECardID   string    `json:"e"`
	DeviceID  string    `json:"d"`
	ACR       string    `json:"acr"`
	AMR       []string  `json:"amr"`
	AuthTime  time.Time `json:"t"`
	Purpose   string    `json:"pu,omitempty"`
	Consented []string  `json:"c,omitempty"`
	Act       string    `json:"act,omitempty"` // delegate acting for the holder, if any
	// Browser is where the collecting browser was (region, IP, device type),
	// set by Collect for the holder's login notices.
	Browser string `json:"b,omitempty"`
	// Txn and Evidence carry a face-level confirmation's transaction and
	// liveness evidence to the completion, where a certification login
	// records the eligibility check (the evidence is bound to Txn).
	Txn      string `json:"x,omitempty"`
	Evidence string `json:"ev,omitempty"`
}

// txnData is what qrlogin keeps in storage.QRTransaction.Data.
type txnData struct {
	Req        Request   `json:"r"`
	BrowserIP  string    `json:"ip"`
	BrowserUA  string    `json:"ua"`
	Elderly    bool      `json:"el,omitempty"`
	Number     int       `json:"n,omitempty"`  // the one shown in the browser
	Candidates []int     `json:"cs,omitempty"` // the three shown on the phone
	Scanner    *scanner  `json:"sc,omitempty"`
	Consent    []string  `json:"cr,omitempty"` // scopes the phone must show for consent
	Approval   *Approval `json:"ap,omitempty"`
	Code       string    `json:"fc,omitempty"` // elderly fallback code
	// Reason says why a transaction was denied, for the browser's message:
	// ReasonHolder, ReasonWrongNumber or ReasonCardInvalid. Never PII.
	Reason string `json:"rs,omitempty"`
	// Deadline is the logical end of the transaction (created + TTL). The
	// store keeps the record a little longer (retryGrace) so that an expired
	// page can start a fresh transaction for the same request.
	Deadline time.Time `json:"dl"`
}

// Reasons of a denial, as the browser sees them (View.Reason, the status
// body's "reason"): the holder refused on the phone, picked the wrong
// number, or the card/e-card that scanned is not active (lost, cancelled).
const (
	ReasonHolder      = "holder"
	ReasonWrongNumber = "wrong_number"
	ReasonCardInvalid = "card_invalid"
)

// retryGrace is how long an expired transaction's request stays available
// for "refresh the QR code" before the holder must go back to the portal.
const retryGrace = 60 * time.Second

// live reports whether the transaction may still move forward at now.
func (d txnData) live(now time.Time) bool { return now.Before(d.Deadline) }

type scanner struct {
	HolderID string `json:"h"`
	ECardID  string `json:"e"`
	DeviceID string `json:"d"`
}

// Config configures a Service.
type Config struct {
	Store     Store          // required
	Holders   HolderCheck    // required
	Completer Completer      // required
	Consent   ConsentChecker // optional
	Observer  Observer       // optional
	// FrameKey keys the frame MACs (HMAC-SM3, ≥ 32 octets). Every replica
	// must use the same key.
	FrameKey []byte
	// TTL of a transaction; default 120 s.
	TTL time.Duration
	// SecureCookies sets Secure and the __Secure- prefix on the browser
	// binding cookie; only a loopback development server may turn it off.
	SecureCookies bool
	// ClientIP extracts the browser's address (trusted-proxy aware); default
	// the host of RemoteAddr.
	ClientIP func(*http.Request) string
	// Limits; zero values take the defaults in DefaultLimits.
	Limits Limits
	// Local counts the per-transaction limits (PollsPerTxn, FramesPerTxn,
	// StreamsPerTxn) in this process; nil means Store. They pace the one
	// browser that holds the transaction's binding cookie, so a count per
	// replica is enough (a browser whose requests are spread over N
	// replicas gets at most N times the pace) and keeps a store command off
	// every poll and frame of a waiting page. The per-IP and per-device
	// limits are always counted in Store, shared by every replica.
	Local  storage.RateLimiter
	Now    func() time.Time
	Logger *slog.Logger
}

// Limits are the rate limits of DESIGN.md §7 and issue 6.
type Limits struct {
	TxnPerIP       int // new transactions per browser IP per minute (default 30)
	PollsPerTxn    int // status polls per transaction per 2 s (default 2: the interval is enforced)
	FramesPerTxn   int // frame fetches per transaction per minute (default 90)
	ScansPerDevice int // scan attempts per device per minute (default 20)
	LookupsPerIP   int // status/frame requests for unknown transactions per IP per minute (default 30)
	StreamsPerTxn  int // event streams opened per transaction per minute (default 10; each holds a subscription)
}

// DefaultLimits are used for zero fields of Config.Limits.
var DefaultLimits = Limits{TxnPerIP: 30, PollsPerTxn: 2, FramesPerTxn: 90, ScansPerDevice: 20, LookupsPerIP: 30, StreamsPerTxn: 10}

// Timing of frames (normal and elderly mode), DESIGN.md §7.
const (
	FrameInterval        = 1 * time.Second
	FrameWindow          = 5 * time.Second
	ElderlyFrameInterval = 5 * time.Second
	ElderlyFrameWindow   = 15 * time.Second
	PollInterval         = 2 * time.Second
	clockSkew            = 1 * time.Second
)

// Service runs QR-Link v1 transactions. It is safe for concurrent use and
// keeps no state of its own: any replica can serve any step.
type Service struct {
	cfg Config
	log *slog.Logger
	now func() time.Time
}

// New validates cfg.
func New(cfg Config) (*Service, error) {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("store is required"))
	}
	if cfg.Holders == nil {
		errs = append(errs, errors.New("holders is required"))
	}
	if cfg.Completer == nil {
		errs = append(errs, errors.New("completer is required"))
	}
	if len(cfg.FrameKey) < 32 {
		errs = append(errs, errors.New("frame key must be at least 32 octets"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("qrlogin: %w", err)
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 120 * time.Second
	}
	l := &cfg.Limits
	for _, p := range []struct {
		v *int
		d int
	}{
		{&l.TxnPerIP, DefaultLimits.TxnPerIP}, {&l.PollsPerTxn, DefaultLimits.PollsPerTxn},
		{&l.FramesPerTxn, DefaultLimits.FramesPerTxn}, {&l.ScansPerDevice, DefaultLimits.ScansPerDevice},
		{&l.LookupsPerIP, DefaultLimits.LookupsPerIP}, {&l.StreamsPerTxn, DefaultLimits.StreamsPerTxn},
	} {
		if *p.v <= 0 {
			*p.v = p.d
		}
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = remoteHost
	}
	if cfg.Local == nil {
		cfg.Local = cfg.Store
	}
	s := &Service{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Begin creates a pending transaction for req and returns its id and the
// browser-binding secret (the caller sets it as a cookie; only its SHA-256
// is stored).
func (s *Service) Begin(ctx context.Context, req Request, browserIP, userAgent string) (txn, binding string, err error) {
	v, binding, err := s.begin(ctx, req, browserIP, userAgent)
	return v.Txn, binding, err
}

// begin is Begin returning the browser's view of the new transaction (what
// BrowserView would read back, without reading it back).
func (s *Service) begin(ctx context.Context, req Request, browserIP, userAgent string) (View, string, error) {
	d, err := s.cfg.Store.Allow(ctx, "qr:begin:"+browserIP, s.cfg.Limits.TxnPerIP, time.Minute)
	if err != nil {
		return View{}, "", err
	}
	if !d.Allowed {
		return View{}, "", ErrRateLimited
	}
	txn, binding := randomID(16), randomID(32)
	now := s.now()
	td := txnData{Req: req, BrowserIP: browserIP, BrowserUA: deviceSummary(userAgent), Number: 10 + randInt(90), Deadline: now.Add(s.cfg.TTL)}
	data, err := json.Marshal(td)
	if err != nil {
		return View{}, "", err
	}
	bh := sha256.Sum256([]byte(binding))
	t, err := s.cfg.Store.CreateQR(ctx, storage.QRTransaction{
		ID: txn, State: StatePending, ClientID: req.ClientID, BindingHash: bh[:],
		ExpiresAt: now.Add(s.cfg.TTL + retryGrace), Data: data,
	})
	if err != nil {
		return View{}, "", err
	}
	s.observe(ctx, txn, req.ClientID, "", StatePending, map[string]string{"ip": browserIP})
	return s.view(t, td), binding, nil
}

// View is the browser's view of a transaction: never any PII.
type View struct {
	Txn       string
	State     string
	Number    int // shown once the phone has scanned
	Elderly   bool
	Code      string // elderly fallback code
	Reason    string // why a denied transaction was denied (Reason* constants)
	ExpiresAt time.Time
	CreatedAt time.Time
	Request   Request
	Version   int64 // the stored record's, to order the records wake-ups carry
}

// load returns the transaction and its data; ErrNotFound if unknown/expired.
func (s *Service) load(ctx context.Context, txn string) (storage.QRTransaction, txnData, error) {
	if !validTxnID(txn) {
		return storage.QRTransaction{}, txnData{}, ErrNotFound
	}
	t, err := s.cfg.Store.GetQR(ctx, txn)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return t, txnData{}, ErrNotFound
		}
		return t, txnData{}, err
	}
	d, err := decodeData(t.Data)
	return t, d, err
}

// decodeData decodes a stored transaction's data.
func decodeData(data []byte) (txnData, error) {
	var d txnData
	if err := json.Unmarshal(data, &d); err != nil {
		return d, fmt.Errorf("qrlogin: stored transaction unreadable: %w", err)
	}
	return d, nil
}

// BrowserView returns the transaction for the browser holding binding. A
// wrong or missing binding reads exactly like an unknown transaction.
func (s *Service) BrowserView(ctx context.Context, txn, binding string) (View, error) {
	t, d, err := s.loadBound(ctx, txn, binding)
	if err != nil {
		return View{}, err
	}
	return s.view(t, d), nil
}

// loadBound is load for the browser holding binding.
func (s *Service) loadBound(ctx context.Context, txn, binding string) (storage.QRTransaction, txnData, error) {
	t, d, err := s.load(ctx, txn)
	if err == nil && !bindingMatches(t.BindingHash, binding) {
		return storage.QRTransaction{}, txnData{}, ErrNotFound
	}
	return t, d, err
}

// view is the browser's view of transaction t with data d.
func (s *Service) view(t storage.QRTransaction, d txnData) View {
	v := View{Txn: t.ID, State: t.State, Elderly: d.Elderly, Code: d.Code, Reason: d.Reason, ExpiresAt: d.Deadline, CreatedAt: t.CreatedAt,
		Request: d.Req, Version: t.Version}
	if !d.live(s.now()) && (t.State == StatePending || t.State == StateScanned || t.State == StateApproved) {
		v.State = StateExpired
	}
	if t.State == StateScanned {
		v.Number = d.Number
	}
	return v
}

// CurrentFrame returns the frame the browser shows now.
func (s *Service) CurrentFrame(v View) Frame { return s.Frames(v, 1)[0] }

// Frames returns the frame the browser shows now and up to n-1 frames that
// follow it, none of them due after the transaction's deadline. A frame
// handed out early is no use early: a scan accepts a frame from the moment
// it is due (clock skew aside) until its window ends.
func (s *Service) Frames(v View, n int) []Frame {
	interval := FrameInterval
	if v.Elderly {
		interval = ElderlyFrameInterval
	}
	step := int(interval / time.Second)
	e := int(s.now().Sub(v.CreatedAt) / time.Second)
	if e < 0 {
		e = 0
	}
	e -= e % step
	n = max(n, 1)
	out := make([]Frame, 0, n)
	for i := range n {
		fe := e + i*step
		if i > 0 && !v.CreatedAt.Add(time.Duration(fe)*time.Second).Before(v.ExpiresAt) {
			break
		}
		out = append(out, Frame{Txn: v.Txn, Elapsed: fe, MAC: frameMAC(s.cfg.FrameKey, v.Txn, fe, v.Request.ClientID)})
	}
	return out
}

// SetElderly switches a pending transaction to elderly mode (large QR, 5 s
// frames, 15 s window) and gives it an 8-character fallback code the holder
// can type into the app instead of scanning.
func (s *Service) SetElderly(ctx context.Context, txn, binding string) (View, error) {
	v, err := s.BrowserView(ctx, txn, binding)
	if err != nil {
		return View{}, err
	}
	if v.State != StatePending || v.Elderly {
		return v, nil
	}
	code := fallbackCode()
	if err := s.cfg.Store.PutOnce(ctx, "qr-code", code, []byte(txn), v.ExpiresAt.Sub(s.now())+time.Second); err != nil {
		return View{}, err
	}
	_, err = s.cfg.Store.TransitionQR(ctx, txn, StatePending, StatePending, func(q *storage.QRTransaction) error {
		return updateData(q, func(d *txnData) { d.Elderly, d.Code = true, code })
	})
	if err != nil {
		return View{}, err
	}
	return s.BrowserView(ctx, txn, binding)
}

// Restart starts a fresh transaction for the same request after the old one
// expired or was cancelled/denied (the "refresh QR code" button), as long as
// the old record is still kept. It needs the old binding secret.
func (s *Service) Restart(ctx context.Context, txn, binding, browserIP, userAgent string) (newTxn, newBinding string, err error) {
	v, err := s.BrowserView(ctx, txn, binding)
	if err != nil {
		return "", "", err
	}
	switch v.State {
	case StateExpired, StateDenied, StateCancelled:
	default:
		return "", "", ErrFinished
	}
	return s.Begin(ctx, v.Request, browserIP, userAgent)
}

// Collect is the browser's completion: with the binding secret, an approved
// transaction moves to consumed exactly once and the approval is returned.
// Pending or scanned transactions return their view and no approval.
func (s *Service) Collect(ctx context.Context, txn, binding string) (View, *Approval, error) {
	t, d, err := s.loadBound(ctx, txn, binding)
	if err != nil {
		return View{}, nil, err
	}
	v := s.view(t, d)
	if v.State != StateApproved {
		return v, nil, nil
	}
	r, err := s.cfg.Store.RedeemQRFrom(ctx, t, StateConsumed)
	if err != nil {
		if errors.Is(err, storage.ErrAlreadyUsed) || errors.Is(err, storage.ErrStateConflict) {
			return v, nil, ErrFinished
		}
		return v, nil, err
	}
	if !bytes.Equal(r.Data, t.Data) { // redeemed from a fresher read than ours
		if d, err = decodeData(r.Data); err != nil {
			return v, nil, err
		}
	}
	if d.Approval == nil {
		return v, nil, fmt.Errorf("qrlogin: approved transaction without approval")
	}
	v.State = StateConsumed
	d.Approval.Browser = region(d.BrowserIP) + " " + d.BrowserIP + "，" + d.BrowserUA
	s.observe(ctx, txn, t.ClientID, StateApproved, StateConsumed, nil)
	return v, d.Approval, nil
}

// Cancel ends a pending or scanned transaction from the browser.
func (s *Service) Cancel(ctx context.Context, txn, binding string) error {
	v, err := s.BrowserView(ctx, txn, binding)
	if err != nil {
		return err
	}
	if v.State != StatePending && v.State != StateScanned {
		return ErrFinished
	}
	if _, err := s.cfg.Store.TransitionQR(ctx, txn, v.State, StateCancelled, nil); err != nil {
		return mapConflict(err)
	}
	s.observe(ctx, txn, v.Request.ClientID, v.State, StateCancelled, nil)
	return nil
}

// Watch subscribes to wake-ups of txn (from any replica); a wake-up carries
// the record a transition wrote, or nil (storage.Sessions.WatchQR).
func (s *Service) Watch(ctx context.Context, txn string) (<-chan *storage.QRTransaction, func(), error) {
	return s.cfg.Store.WatchQR(ctx, txn)
}

// WokenView is the browser's view after a wake-up that came with rec: the
// view of rec when it is newer than cur (the view the caller has), checked
// against the binding like a read; otherwise, or without rec, it reads.
func (s *Service) WokenView(ctx context.Context, cur View, rec *storage.QRTransaction, binding string) (View, error) {
	if rec == nil || rec.ID != cur.Txn || rec.Version <= cur.Version {
		return s.BrowserView(ctx, cur.Txn, binding)
	}
	if !bindingMatches(rec.BindingHash, binding) {
		return View{}, ErrNotFound
	}
	d, err := decodeData(rec.Data)
	if err != nil {
		return View{}, err
	}
	return s.view(*rec, d), nil
}

// allow applies one of the shared rate limits (per IP, per device) to key.
func (s *Service) allow(ctx context.Context, key string, limit int, window time.Duration) error {
	return limited(s.cfg.Store.Allow(ctx, key, limit, window))
}

// allowTxn applies one of the per-transaction limits, counted in this
// process (Config.Local).
func (s *Service) allowTxn(ctx context.Context, key string, limit int, window time.Duration) error {
	return limited(s.cfg.Local.Allow(ctx, key, limit, window))
}

func limited(d storage.RateDecision, err error) error {
	if err != nil {
		return err
	}
	if !d.Allowed {
		return ErrRateLimited
	}
	return nil
}

func (s *Service) observe(ctx context.Context, txn, clientID, from, to string, attrs map[string]string) {
	s.log.InfoContext(ctx, "qr transition", "txn", txn[:6], "client_id", clientID, "from", from, "to", to)
	if s.cfg.Observer != nil {
		s.cfg.Observer.Transition(ctx, txn, clientID, from, to, attrs)
	}
}

// deny moves txn from `from` to denied, recording reason for the browser.
func (s *Service) deny(ctx context.Context, txn, clientID, from, reason string) error {
	_, err := s.cfg.Store.TransitionQR(ctx, txn, from, StateDenied, func(q *storage.QRTransaction) error {
		return updateData(q, func(d *txnData) { d.Reason = reason })
	})
	if err != nil {
		return mapConflict(err)
	}
	s.observe(ctx, txn, clientID, from, StateDenied, map[string]string{"reason": reason})
	return nil
}

// updateData applies f to the transaction's current data inside a
// compare-and-set (never to a copy read before it).
func updateData(q *storage.QRTransaction, f func(*txnData)) error {
	return updateDataFrom(q, nil, txnData{}, f)
}

// updateDataFrom is updateData for a caller that has already decoded data
// into d (load): when q still holds exactly those bytes (a transition from
// the read just checked), f gets a copy of d instead of a second decode. f
// must assign fields, not change what they point to.
func updateDataFrom(q *storage.QRTransaction, data []byte, d txnData, f func(*txnData)) error {
	if data == nil || !bytes.Equal(q.Data, data) {
		var err error
		if d, err = decodeData(q.Data); err != nil {
			return err
		}
	}
	f(&d)
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	q.Data = b
	return nil
}

// mapConflict turns a lost compare-and-set into ErrFinished.
func mapConflict(err error) error {
	switch {
	case errors.Is(err, storage.ErrStateConflict), errors.Is(err, storage.ErrAlreadyUsed):
		return ErrFinished
	case errors.Is(err, storage.ErrNotFound):
		return ErrNotFound
	}
	return err
}

func bindingMatches(hash []byte, binding string) bool {
	if binding == "" || len(hash) != sha256.Size {
		return false
	}
	h := sha256.Sum256([]byte(binding))
	return subtle.ConstantTimeCompare(h[:], hash) == 1
}

func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func randInt(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		panic(err)
	}
	return int(v.Int64())
}

// codeAlphabet has no 0/O, 1/I/L: easy to read aloud and to type.
const codeAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

func fallbackCode() string {
	b := make([]byte, 8)
	for i := range b {
		b[i] = codeAlphabet[randInt(len(codeAlphabet))]
	}
	return string(b)
}
