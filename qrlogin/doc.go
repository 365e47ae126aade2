// Package qrlogin implements QR-Link v1, the cross-device scan-to-login protocol.
// It declares the small interfaces it needs and never imports idp.
package qrlogin
