package entitlement

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
)

// Webhook wire format. Each delivery is one POST of a FeedEvent (JSON) with:
//
//	Content-Type:      application/json
//	Idempotency-Key:   evt_<seq>  (the same on every retry and redelivery)
//	Webhook-Signature: <protected>..<signature>  — a JWS with detached payload
//	                   (RFC 7515 Appendix F) over the exact body, typ
//	                   essc-webhook+jws, SM2SM3 for gm agencies, ES256 for intl.
//
// Any 2xx acknowledges; anything else (or no answer) is retried with backoff.
const (
	WebhookSignatureHeader = "Webhook-Signature"
	IdempotencyKeyHeader   = "Idempotency-Key"
	WebhookType            = "essc-webhook+jws"
)

// SignWebhook returns the detached JWS of body with key.
func SignWebhook(key *signing.Key, body []byte) (string, error) {
	tok, err := signing.Sign(key, map[string]any{"typ": WebhookType}, body)
	if err != nil {
		return "", err
	}
	parts := strings.SplitN(tok, ".", 3)
	return parts[0] + ".." + parts[2], nil
}

// VerifyWebhook checks a Webhook-Signature value against the exact body with
// keys (the published JWKS). Errors wrap the signing sentinels.
func VerifyWebhook(body []byte, sig string, keys signing.KeyResolver) error {
	parts := strings.Split(sig, ".")
	if len(parts) != 3 || parts[1] != "" {
		return fmt.Errorf("webhook signature: %w", signing.ErrMalformed)
	}
	hdr, _, err := signing.Verify(parts[0]+"."+base64.RawURLEncoding.EncodeToString(body)+"."+parts[2], keys)
	if err != nil {
		return err
	}
	if hdr.Typ != WebhookType {
		return fmt.Errorf("webhook signature typ: %w", signing.ErrMalformed)
	}
	return nil
}

// DispatcherConfig configures NewDispatcher.
type DispatcherConfig struct {
	Service *Service // required: its store, registry (webhook URLs, profiles) and keys are used
	// HTTPClient posts webhooks; if nil, a client with a 10 s timeout that
	// never follows redirects (a 3xx is a failed attempt: following it would
	// resend the signed event to any URL, plain http included).
	HTTPClient *http.Client
	// Owner names this dispatcher in leases; random if empty.
	Owner string
	// Interval between polls for work (default 1 s); Lease of an agency
	// (default 60 s); Batch events per lease (default 100).
	Interval time.Duration
	Lease    time.Duration
	Batch    int
	// MaxAttempts before an event is dead-lettered (default 8).
	MaxAttempts int
	// Backoff is the delay after the n-th failed attempt (n ≥ 1); default
	// 2^(n-1) s capped at 1 h.
	Backoff func(n int) time.Duration
	// SweepInterval runs Service.Sweep (default 1 min); CardInterval runs
	// Service.ConsumeCardEvents (default 2 s). Negative disables.
	SweepInterval time.Duration
	CardInterval  time.Duration
	Logger        *slog.Logger
}

// Dispatcher delivers the durable feed as signed webhooks and runs the
// sweeper and the termination consumer. Nothing is lost: the cursor moves
// only after a 2xx (or a dead letter), so a crash mid-delivery means the
// event is sent again with the same Idempotency-Key. Events of one agency
// are delivered strictly in Seq order (hence in order per beneficiary); one
// failing event holds back the agency's later events until it succeeds or
// is dead-lettered.
type Dispatcher struct {
	cfg    DispatcherConfig
	s      *Service
	log    *slog.Logger
	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
	slots  chan struct{} // one per delivery in flight (dispatch)
}

// maxDeliveries bounds the deliveries in flight (one per agency).
const maxDeliveries = 8

// NewDispatcher validates cfg and fills defaults.
func NewDispatcher(cfg DispatcherConfig) (*Dispatcher, error) {
	if cfg.Service == nil {
		return nil, errors.New("entitlement: dispatcher needs Service")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	if cfg.Owner == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.Owner = "dispatcher-" + hex.EncodeToString(b[:])
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 60 * time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.Backoff == nil {
		cfg.Backoff = func(n int) time.Duration {
			if n > 12 {
				return time.Hour
			}
			return min(time.Second<<(n-1), time.Hour)
		}
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Minute
	}
	if cfg.CardInterval == 0 {
		cfg.CardInterval = 2 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = cfg.Service.log
	}
	return &Dispatcher{cfg: cfg, s: cfg.Service, log: log, slots: make(chan struct{}, maxDeliveries)}, nil
}

// Start runs the loops until ctx ends or Stop is called. Calling Start
// twice without Stop is an error.
func (d *Dispatcher) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancel != nil {
		return errors.New("entitlement: dispatcher already started")
	}
	ctx, d.cancel = context.WithCancel(ctx)
	d.loop(ctx, d.cfg.Interval, d.dispatch)
	if d.cfg.SweepInterval > 0 {
		d.loop(ctx, d.cfg.SweepInterval, func(ctx context.Context) {
			for {
				n, err := d.s.Sweep(ctx, 1000)
				if err != nil {
					d.log.WarnContext(ctx, "entitlement sweep failed", "err", err)
				}
				if err != nil || n == 0 || ctx.Err() != nil {
					return
				}
			}
		})
	}
	if d.cfg.CardInterval > 0 {
		d.loop(ctx, d.cfg.CardInterval, func(ctx context.Context) {
			if _, err := d.s.ConsumeCardEvents(ctx, 500); err != nil && ctx.Err() == nil {
				d.log.WarnContext(ctx, "entitlement termination consumer failed", "err", err)
			}
		})
	}
	return nil
}

func (d *Dispatcher) loop(ctx context.Context, every time.Duration, fn func(context.Context)) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			fn(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop cancels the loops and waits for them (an in-flight POST is abandoned;
// its event is delivered again later with the same key).
func (d *Dispatcher) Stop() {
	d.mu.Lock()
	cancel := d.cancel
	d.cancel = nil
	d.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	d.wg.Wait()
	d.cfg.HTTPClient.CloseIdleConnections()
}

// dispatch claims as many agencies with pending events as there are free
// delivery slots and starts their deliveries without waiting for them. A
// slow or hanging endpoint holds its own slot, up to the request timeout,
// never another agency's delivery: a round that waited for all of its
// deliveries before claiming again delayed every agency that got events
// meanwhile by up to the timeout. An agency under delivery stays leased,
// so it is not claimed twice.
func (d *Dispatcher) dispatch(ctx context.Context) {
	free := cap(d.slots) - len(d.slots) // only this loop takes slots
	if free == 0 {
		return
	}
	targets, err := d.s.cfg.Store.ClaimWebhookTargets(ctx, d.cfg.Owner, d.cfg.Lease, free)
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "webhook claim failed", "err", err)
		}
		return
	}
	for _, t := range targets {
		d.slots <- struct{}{}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer func() { <-d.slots }()
			d.deliverAgency(ctx, t)
		}()
	}
}

func (d *Dispatcher) deliverAgency(ctx context.Context, t storage.WebhookTarget) {
	store := d.s.cfg.Store
	started := time.Now()
	client, err := d.s.cfg.Registry.Client(ctx, t.AgencyID)
	if err != nil || client.WebhookURL == "" || client.Disabled {
		// No endpoint (the agency reads the feed) or registry trouble: look again later.
		_ = store.ReleaseWebhook(context.WithoutCancel(ctx), t.AgencyID, d.cfg.Owner, d.s.now().Add(time.Minute))
		return
	}
	evs, err := store.EntitlementEvents(ctx, t.AgencyID, t.Cursor, d.cfg.Batch)
	if err != nil {
		_ = store.ReleaseWebhook(context.WithoutCancel(ctx), t.AgencyID, d.cfg.Owner, d.s.now().Add(d.cfg.Interval))
		return
	}
	attempts := t.Attempts
	for _, e := range evs {
		if ctx.Err() != nil || time.Since(started) > d.cfg.Lease/2 {
			break
		}
		if err := d.post(ctx, client, e); err != nil {
			if ctx.Err() != nil {
				return // stopping: the lease expires, the event is sent again later
			}
			attempts++
			dead, ferr := store.FailWebhook(context.WithoutCancel(ctx), t.AgencyID, d.cfg.Owner, e.Seq, err.Error(),
				d.s.now().Add(d.cfg.Backoff(attempts)), d.cfg.MaxAttempts)
			if ferr == nil && dead {
				d.log.WarnContext(ctx, "webhook dead-lettered", "agency", t.AgencyID, "seq", e.Seq, "attempts", attempts)
			}
			return
		}
		if err := store.AckWebhook(context.WithoutCancel(ctx), t.AgencyID, d.cfg.Owner, e.Seq); err != nil {
			return // lease lost (redelivery requested or expired): stop
		}
		attempts = 0
	}
	_ = store.ReleaseWebhook(context.WithoutCancel(ctx), t.AgencyID, d.cfg.Owner, time.Time{})
}

func (d *Dispatcher) post(ctx context.Context, client storage.Client, e storage.EntitlementEvent) error {
	body, err := json.Marshal(feedEvent(e))
	if err != nil {
		return err
	}
	key, err := d.s.cfg.Keys.Active(algFor(client.Profile))
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	sig, err := SignWebhook(key, body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, client.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(IdempotencyKeyHeader, EventID(e.Seq))
	req.Header.Set(WebhookSignatureHeader, sig)
	resp, err := d.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("receiver answered %d", resp.StatusCode)
	}
	return nil
}
