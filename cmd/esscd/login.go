package main

import (
	"errors"

	"github.com/essc-project/essc/idp"
)

// loginStep builds the browser login step the provider hands authorize
// requests to (QR-Link v1, package qrlogin).
func (a *app) loginStep() (idp.LoginStep, error) {
	return nil, errors.New("esscd: the QR login step is not wired yet")
}
