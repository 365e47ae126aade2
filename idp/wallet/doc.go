// Package wallet is the e-card app API (/wallet/v1) and the counter
// verification endpoint (/verify/v1/presentation-codes), DESIGN.md §6, §7.
//
// Every wallet request carries a device-key proof (header Essc-Proof): an
// SM2SM3 JWS over the method, URL, a fresh iat (±60 s), a single-use jti and
// the SM3 hash of the body. Apply and the first PIN change embed the device
// JWK; afterwards kid names the bound device, which is looked up live, with
// the e-card and card status re-checked on every request. Errors are fixed
// codes with fixed zh-CN messages, mapped in one place (errors.go).
//
// wallet imports idp/card, qrlogin, signing and the storage contracts; it
// never imports its parent idp (the provider adapts to it in cmd/esscd).
package wallet
