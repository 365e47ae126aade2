package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/storage"
)

// mountEntitlement wires the pensioners' eligibility check: the agency API
// at /entitlement/v1 and the webhook dispatcher (with the cycle sweep and the
// card-cancellation consumer) as a background worker.
func (a *app) mountEntitlement(mux *http.ServeMux) error {
	live, err := a.livenessVerifier()
	if err != nil {
		return err
	}
	svc, err := entitlement.New(entitlement.Config{Store: a.reg, Registry: a.reg, Keys: a.keys.Set(), Liveness: live,
		PairwiseKey: a.secrets.PairwiseKey, Issuer: a.cfg.Issuer, Now: a.now, Logger: a.log})
	if err != nil {
		return err
	}
	h, err := entitlement.NewHandler(entitlement.HandlerConfig{Service: svc, Auth: entitlementAuth{a}, Keys: a.keys.Set(), Logger: a.log})
	if err != nil {
		return err
	}
	h.Mount(mux)
	wh := a.cfg.Entitlement.Webhooks
	d, err := entitlement.NewDispatcher(entitlement.DispatcherConfig{Service: svc, HTTPClient: webhookClient(wh.Timeout),
		Interval: wh.PollInterval, Lease: wh.Lease, MaxAttempts: wh.MaxAttempts, Backoff: wh.Backoff,
		SweepInterval: time.Minute, CardInterval: 2 * time.Second})
	if err != nil {
		return err
	}
	a.entitlements = svc
	a.workers = append(a.workers, func(ctx context.Context) {
		if err := d.Start(ctx); err != nil {
			a.log.Error("entitlement dispatcher", "err", err)
			return
		}
		<-ctx.Done()
		d.Stop()
	})
	return nil
}

// webhookClient posts the agencies' webhooks. It never follows a redirect:
// the registered URL is checked to be https, and a 3xx (to plain http or to
// another host) would carry the signed event past that check. A redirect
// counts as a failed attempt, retried and dead-lettered like any other.
func webhookClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// entitlementAuth adapts the provider's bearer-token check.
type entitlementAuth struct{ a *app }

func (e entitlementAuth) Authenticate(r *http.Request) (entitlement.Principal, error) {
	id, scopes, err := e.a.prov.Authenticate(r)
	if err != nil {
		if errors.Is(err, storage.ErrUnavailable) {
			return entitlement.Principal{}, err
		}
		return entitlement.Principal{}, fmt.Errorf("%w: %w", entitlement.ErrUnauthenticated, err)
	}
	return entitlement.Principal{ClientID: id, Scopes: scopes}, nil
}
