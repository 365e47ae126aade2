// Package qrlogin implements QR-Link v1, essc's cross-device scan-to-login
// protocol (DESIGN.md §7, docs/PROTOCOL.md).
//
// A Service runs transactions pending → scanned → approved → consumed (exits
// denied, cancelled, expired) with every transition a compare-and-set in the
// session store, so any replica can serve any step and wake-ups travel over
// the store's pub/sub. The browser side (Handler) renders the zh-CN login
// page with an animated QR (HMAC-SM3 frames, 1 s; elderly mode 5 s with a
// typed fallback code), follows the state by SSE or long-poll, and collects
// the approval only with the HttpOnly browser-binding cookie. The page draws
// each frame's QR itself from the payload (web/static/qrcode.js, level M);
// the server draws only on request: SVG with /frame?image=svg and PNG at
// /frame.png, for clients without script (QRSVG, QRImage). A lost or
// cancelled card that scans or confirms denies the transaction with
// ReasonCardInvalid so the page can say why. The app side
// (Scan, Confirm, Deny, ResolveCode) is called by the wallet API after it has
// authenticated the device key.
//
// qrlogin declares the small interfaces it needs (Store, HolderCheck,
// Completer, ConsentChecker, Observer) and must not import idp, cmd or a
// concrete storage backend (.ci/imports.sh); tests use storage/memory and,
// with ESSC_TEST_REDIS_URL, storage/redis.
package qrlogin
