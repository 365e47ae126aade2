package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"

	"github.com/essc-project/essc/idp"
	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/signing"
)

// mountWallet mounts the e-card app API and the counter verification endpoint.
func (a *app) mountWallet(mux *http.ServeMux) error {
	live, err := a.livenessVerifier()
	if err != nil {
		return err
	}
	w, err := wallet.New(wallet.Config{
		BaseURL: a.cfg.Issuer, Issuer: a.prov.Issuer(idp.ProfileGM), Cards: a.cards, QR: a.qr.qr,
		Registry: a.reg, Notices: a.qr, Certifier: a.entitlements, Store: a.sessions, Keys: a.keys.Set(), Liveness: live,
		AnonymousPerIP: a.cfg.Wallet.AnonymousPerIPPer10Min, ClientIP: a.clientIP,
		Now: a.now, Logger: a.log,
	})
	if err != nil {
		return err
	}
	w.Mount(mux)
	v, err := wallet.NewVerifier(wallet.VerifierConfig{Auth: a.prov, Store: a.sessions, Registry: a.reg,
		Now: a.now, Logger: a.log})
	if err != nil {
		return err
	}
	v.Mount(mux)
	return nil
}

// livenessVerifier returns the configured liveness verifier: none, or the
// development verifier (never in production: Validate refuses it). Its test
// key is a PKCS#8 PEM file; in demo mode one is generated under DATA/demo.
func (a *app) livenessVerifier() (wallet.LivenessVerifier, error) {
	if a.live != nil {
		return *a.live, nil
	}
	v, err := a.buildLiveness()
	if err == nil {
		a.live = &v
	}
	return v, err
}

func (a *app) buildLiveness() (wallet.LivenessVerifier, error) {
	if a.cfg.Liveness.Verifier != "development" {
		return nil, nil
	}
	path := a.cfg.Liveness.DevKeyFile
	if path == "" {
		path = filepath.Join(a.cfg.Data, "demo", "liveness-dev-key.pem")
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && a.cfg.Liveness.DevKeyFile == "" {
		k, gerr := signing.GenerateKey(signing.AlgSM2SM3)
		if gerr != nil {
			return nil, gerr
		}
		if b, err = signing.MarshalPKCS8PEM(k, nil); err == nil {
			if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
				err = os.WriteFile(path, b, 0o600)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("liveness development key: %w", err)
	}
	k, err := signing.ParsePKCS8PEM(b, nil)
	if err != nil {
		return nil, fmt.Errorf("liveness development key: %w", err)
	}
	pub, err := signing.NewPublicKey(k.Alg(), k.Public())
	if err != nil {
		return nil, err
	}
	a.log.Warn("DEVELOPMENT liveness verifier enabled: face confirmations are accepted on a test key's signature", "key", path)
	return wallet.DevLiveness{Key: pub, Now: a.now}, nil
}
