package main

import (
	"bytes"
	"context"
	"image"
	_ "image/png"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/idp/wallet/client"
	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/signing"
)

// TestBrowserQRLogin drives headless Chromium through the demo portal's
// login: the portal redirects to authorize, the QR page renders, the test
// reads the QR from a screenshot of the rendered image, the e-card app
// scans and confirms the number the page shows (updated by SSE), and the
// page's script completes the login back to the portal, which shows the
// verified SM2 ID token. It runs on the embedded default and, when the
// variables are set, on PostgreSQL + Redis. ESSC_TEST_CHROMIUM names the
// browser (.ci/run installs it and sets it).
func TestBrowserQRLogin(t *testing.T) {
	chromium := os.Getenv("ESSC_TEST_CHROMIUM")
	if chromium == "" || testing.Short() {
		t.Skip("ESSC_TEST_CHROMIUM not set: real-browser test skipped")
	}
	demo := func(c *FileConfig) { c.Demo = true }
	t.Run("embedded", func(t *testing.T) { runBrowserLogin(t, chromium, newStack(t, "", "", demo)) })
	if r, d := os.Getenv("ESSC_TEST_REDIS_URL"), os.Getenv("ESSC_TEST_DATABASE_URL"); r != "" && d != "" {
		t.Run("redis+postgres", func(t *testing.T) { runBrowserLogin(t, chromium, newStack(t, postgresSchema(t, d), r, demo)) })
	}
}

func runBrowserLogin(t *testing.T, chromium string, s *stack) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()

	// The citizen's phone: an e-card for the demo worker.
	k, _ := signing.GenerateKey(signing.AlgSM2SM3)
	app := &client.Client{Base: s.base, Key: k}
	w := demoCards[0]
	if _, err := app.Apply(context.Background(), wallet.ApplyRequest{CardNumber: w.Number, SSN: ssnFor(w.SSNPrefix), Name: w.Name, PIN: w.PIN}); err != nil {
		t.Fatal(err)
	}

	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.base+"/demo/login?profile=gm"),
		chromedp.WaitVisible("#qr-img"),
		chromedp.Sleep(300*time.Millisecond), // let the first animated frame swap in
	); err != nil {
		t.Fatalf("QR page: %v", err)
	}
	shot, err := chromedp.Run(ctx, chromedp.Screenshot("#qr-img"))
	if err != nil {
		t.Fatalf("QR screenshot: %v", err)
	}
	first := decodePNG(t, shot)
	if !strings.HasPrefix(first, "essc://login?v=1&t=") {
		t.Fatalf("QR decodes to %q", first)
	}
	// The QR animates from the frames the page came with: 2.5 s later it
	// shows a later frame without a single /frame request.
	if err := chromedp.Do(ctx, chromedp.Sleep(2500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	shot, err = chromedp.Run(ctx, chromedp.Screenshot("#qr-img"))
	if err != nil {
		t.Fatalf("QR screenshot: %v", err)
	}
	payload := decodePNG(t, shot)
	f1, err1 := qrlogin.ParsePayload(first)
	f2, err2 := qrlogin.ParsePayload(payload)
	if err1 != nil || err2 != nil || f2.Txn != f1.Txn || f2.Elapsed <= f1.Elapsed {
		t.Fatalf("QR did not animate: %q then %q (%v, %v)", first, payload, err1, err2)
	}
	fetches, err := chromedp.Run(ctx, chromedp.Evaluate[int](
		`performance.getEntriesByType("resource").filter(function (e) { return /\/frame$/.test(e.name); }).length`))
	if err != nil || fetches != 0 {
		t.Fatalf("frame requests in the first 2.8 s: %d (%v), want 0", fetches, err)
	}
	view, err := app.Scan(context.Background(), payload)
	if err != nil {
		t.Fatalf("scan of the rendered QR: %v", err)
	}

	if err := chromedp.Do(ctx, chromedp.WaitVisible("#scanned")); err != nil {
		t.Fatalf("browser never showed the scanned state: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("number").textContent.trim().length > 0`)); err != nil {
		t.Fatalf("browser never showed the number: %v", err)
	}
	shown, err := chromedp.Run(ctx, chromedp.Text("#number"))
	if err != nil {
		t.Fatal(err)
	}
	number, err := strconv.Atoi(strings.TrimSpace(shown))
	if err != nil {
		t.Fatalf("number %q", shown)
	}
	if err := app.Confirm(context.Background(), view.Txn, number, w.PIN); err != nil {
		t.Fatal(err)
	}
	// The page's script submits the completion form: the target navigates
	// (QR page → OIDC redirect → portal callback) while we wait, so a poll
	// can fail with "navigated" or "Cannot find context": retry until the
	// portal's page is there or the deadline passes.
	for deadline := time.Now().Add(30 * time.Second); ; {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(document.body && document.body.innerText.includes("登录成功"))`))
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page did not complete the login: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	body, err := chromedp.Run(ctx, chromedp.Text("body"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SM2SM3", "通过", "urn:essc:acr:pin"} {
		if !strings.Contains(body, want) {
			t.Fatalf("portal page lacks %q:\n%s", want, body)
		}
	}
}

func decodePNG(t *testing.T, png []byte) string {
	img, _, err := image.Decode(bytes.NewReader(png))
	if err != nil {
		t.Fatal(err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("no QR in the screenshot: %v", err)
	}
	return res.GetText()
}
