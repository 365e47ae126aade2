package qrlogin_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/storage/storagetest"
)

// benchService is a Service on a fresh store of the named backend with
// limits that never bind.
func benchService(b *testing.B, open opener) (*qrlogin.Service, *storagetest.Clock) {
	clock := storagetest.NewClock(time.Now())
	store, _ := open(b, clock)
	lim := qrlogin.Limits{TxnPerIP: 1 << 30, PollsPerTxn: 1 << 30, FramesPerTxn: 1 << 30, ScansPerDevice: 1 << 30, LookupsPerIP: 1 << 30}
	svc, err := qrlogin.New(qrlogin.Config{Store: store, Holders: &holders{inactive: map[string]bool{}}, Completer: &completer{},
		FrameKey: frameKey, Now: clock.Now, Limits: lim})
	if err != nil {
		b.Fatal(err)
	}
	return svc, clock
}

// BenchmarkFrame is one animation step without the image: the MAC and the
// payload string (what every replica computes once a second per open page).
func BenchmarkFrame(b *testing.B) {
	svc, _ := benchService(b, backends(b)["memory"])
	v := qrlogin.View{Txn: "AAAAAAAAAAAAAAAAAAAAAA", CreatedAt: time.Now(), Request: qrlogin.Request{ClientID: "portal"}}
	b.ReportAllocs()
	for b.Loop() {
		_ = svc.CurrentFrame(v).String()
	}
}

// BenchmarkFrameImage adds the PNG encoding of the QR symbol.
func BenchmarkFrameImage(b *testing.B) {
	svc, _ := benchService(b, backends(b)["memory"])
	v := qrlogin.View{Txn: "AAAAAAAAAAAAAAAAAAAAAA", CreatedAt: time.Now(), Request: qrlogin.Request{ClientID: "portal"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := qrlogin.QRImage(svc.CurrentFrame(v).String(), false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFrameSVG is what the page animates: the frame as an SVG.
func BenchmarkFrameSVG(b *testing.B) {
	svc, _ := benchService(b, backends(b)["memory"])
	v := qrlogin.View{Txn: "AAAAAAAAAAAAAAAAAAAAAA", CreatedAt: time.Now(), Request: qrlogin.Request{ClientID: "portal"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := qrlogin.QRSVG(svc.CurrentFrame(v).String()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScanConfirm is one login's service work, without HTTP: begin,
// browser view + frame, scan, confirm, collect.
func BenchmarkScanConfirm(b *testing.B) {
	for name, open := range backends(b) {
		b.Run(name, func(b *testing.B) {
			svc, _ := benchService(b, open)
			ctx := context.Background()
			r := req("")
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				txn, binding, err := svc.Begin(ctx, r, "192.0.2.1", "Mozilla/5.0 (Windows NT 10.0) Chrome/130")
				if err != nil {
					b.Fatal(err)
				}
				v, err := svc.BrowserView(ctx, txn, binding)
				if err != nil {
					b.Fatal(err)
				}
				dev := qrlogin.Device{HolderID: "h", ECardID: "e", DeviceID: fmt.Sprint("d", i)}
				if _, err := svc.Scan(ctx, dev, svc.CurrentFrame(v).String()); err != nil {
					b.Fatal(err)
				}
				v, _ = svc.BrowserView(ctx, txn, binding)
				if err := svc.Confirm(ctx, dev, txn, v.Number, qrlogin.Approval{ACR: qrlogin.ACRPIN, AMR: []string{"hwk", "pin"}}); err != nil {
					b.Fatal(err)
				}
				if _, a, err := svc.Collect(ctx, txn, binding); err != nil || a == nil {
					b.Fatal(err)
				}
			}
		})
	}
}
