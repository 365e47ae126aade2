package entitlement_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/essc-project/essc/idp"
	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
)

func TestCertifyAndAttest(t *testing.T) {
	engines(t, func(t *testing.T, open func(t *testing.T) *env) {
		e := open(t)
		ctx := context.Background()
		p := e.person(t)
		anchor := time.Date(2023, 1, 10, 0, 0, 0, 0, entitlement.CST())
		gm := e.register(t, "agency-gm", p, anchor)
		if gm.Status != entitlement.StatusSuspended {
			t.Fatalf("anchor 2023-01 at 2024-03: status %s, want suspended", gm.Status)
		}
		intl := e.register(t, "agency-intl", p, time.Date(2023, 12, 1, 0, 0, 0, 0, entitlement.CST()))
		if intl.Status != entitlement.StatusCertified {
			t.Fatalf("intl status %s", intl.Status)
		}
		certs, err := e.svc.Certify(ctx, e.certifyInput(t, p))
		if err != nil {
			t.Fatalf("Certify: %v", err)
		}
		if len(certs) != 2 {
			t.Fatalf("certifications = %d, want 2 (one per agency)", len(certs))
		}
		for _, c := range certs {
			hdr, _, err := signing.Verify(c.Attestation, e.keys)
			if err != nil {
				t.Fatal(err)
			}
			wantAlg, sector := signing.AlgES256, "sector-intl"
			if c.AgencyID == "agency-gm" {
				wantAlg, sector = signing.AlgSM2SM3, "sector-gm"
			}
			if hdr.Alg != wantAlg || hdr.Typ != entitlement.AttestationType {
				t.Fatalf("%s: alg %s typ %s", c.AgencyID, hdr.Alg, hdr.Typ)
			}
			claims, err := entitlement.VerifyAttestation(c.Attestation, e.keys, c.AgencyID, e.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			if claims.Sub != idp.PairwiseSubject(e.pairwise, sector, p.HolderID) {
				t.Fatalf("sub is not the provider's pairwise subject")
			}
			if claims.Method != entitlement.MethodApp || claims.Act != nil || claims.Benefit != entitlement.BenefitEnterprisePension ||
				claims.ValidUntil != time.Date(2025, 4, 1, 0, 0, 0, 0, entitlement.CST()).Unix() || claims.JTI == "" {
				t.Fatalf("claims %+v", claims)
			}
			if _, err := entitlement.VerifyAttestation(c.Attestation, e.keys, "agency-other", e.clock.Now()); !errors.Is(err, entitlement.ErrInvalidAttestation) {
				t.Fatalf("other audience: %v", err)
			}
			if _, err := entitlement.VerifyAttestation(c.Attestation, e.keys, "", time.Date(2025, 4, 1, 0, 0, 0, 0, entitlement.CST())); !errors.Is(err, entitlement.ErrInvalidAttestation) {
				t.Fatalf("expired attestation accepted: %v", err)
			}
		}
		v, err := e.svc.Get(ctx, "agency-gm", gm.ID)
		if err != nil || v.Status != entitlement.StatusCertified || v.Method != entitlement.MethodApp {
			t.Fatalf("after certify: %+v %v", v, err)
		}
		got := types(e.events(t, "agency-gm"))
		if !slices.Equal(got, []string{entitlement.EventRegistered, entitlement.EventCertified}) {
			t.Fatalf("gm feed %v", got)
		}
		// A forged attestation (signed by a key not in the set) fails.
		other, _ := signing.GenerateKey(signing.AlgSM2SM3)
		forged, _ := signing.SignClaims(other, entitlement.AttestationType, map[string]any{"sub": "x"})
		if _, err := entitlement.VerifyAttestation(forged, e.keys, "", e.clock.Now()); !errors.Is(err, entitlement.ErrInvalidAttestation) {
			t.Fatalf("forged attestation: %v", err)
		}
	})
}

func TestCertifyRefusals(t *testing.T) {
	engines(t, func(t *testing.T, open func(t *testing.T) *env) {
		e := open(t)
		ctx := context.Background()
		p := e.person(t)
		e.register(t, "agency-gm", p, time.Date(2023, 1, 10, 0, 0, 0, 0, entitlement.CST()))
		relative := e.person(t)
		stranger := e.person(t)
		otherKey, _ := signing.GenerateKey(signing.AlgSM2SM3)
		for _, tc := range []struct {
			name string
			mod  func(in *entitlement.CertifyInput)
			want error
		}{
			{"fail/pin-only login never certifies", func(in *entitlement.CertifyInput) {
				in.ACR, in.AMR = "urn:essc:acr:pin", []string{"hwk", "pin"}
			}, entitlement.ErrNotFaceLevel},
			{"fail/face acr but amr without face", func(in *entitlement.CertifyInput) { in.AMR = []string{"hwk", "pin"} }, entitlement.ErrNotFaceLevel},
			{"fail/forged liveness evidence", func(in *entitlement.CertifyInput) {
				in.LivenessEvidence, _ = wallet.SignDevLiveness(otherKey, p.ECardID, "chal-1", e.clock.Now())
			}, entitlement.ErrLiveness},
			{"fail/expired liveness evidence", func(in *entitlement.CertifyInput) {
				in.LivenessEvidence, _ = wallet.SignDevLiveness(e.liveKey, p.ECardID, "chal-1", e.clock.Now().Add(-10*time.Minute))
			}, entitlement.ErrLiveness},
			{"fail/evidence for another challenge", func(in *entitlement.CertifyInput) { in.Challenge = "chal-2" }, entitlement.ErrLiveness},
			{"fail/missing evidence", func(in *entitlement.CertifyInput) { in.LivenessEvidence = "" }, entitlement.ErrLiveness},
			{"fail/someone else's e-card", func(in *entitlement.CertifyInput) { in.ECardID = stranger.ECardID }, entitlement.ErrCardNotLive},
			{"fail/unknown method", func(in *entitlement.CertifyInput) { in.Method = "sms" }, entitlement.ErrInvalidRequest},
			{"fail/act on a non-family method", func(in *entitlement.CertifyInput) { in.Act = relative.HolderID }, entitlement.ErrInvalidRequest},
			{"fail/family without a registered authorisation", func(in *entitlement.CertifyInput) {
				in.Method, in.Act = entitlement.MethodFamily, relative.HolderID
			}, entitlement.ErrNoDelegation},
			{"fail/holder with nothing registered", func(in *entitlement.CertifyInput) {
				*in = e.certifyInput(t, stranger)
			}, entitlement.ErrNothingToCertify},
		} {
			t.Run(tc.name, func(t *testing.T) {
				in := e.certifyInput(t, p)
				tc.mod(&in)
				if _, err := e.svc.Certify(ctx, in); !errors.Is(err, tc.want) {
					t.Fatalf("Certify = %v, want %v", err, tc.want)
				}
			})
		}
		if n := len(e.events(t, "agency-gm")); n != 1 {
			t.Fatalf("refused certifications wrote %d events", n-1)
		}
		t.Run("ok/family with authorisation records act", func(t *testing.T) {
			if err := e.store.Tx(ctx, func(tx storage.RegistryTx) error {
				_, err := tx.CreateDelegation(ctx, storage.Delegation{PrincipalHolderID: p.HolderID, AgentHolderID: relative.HolderID,
					Kind: storage.DelegationAgent, Scopes: []string{"pension_certification"}, ValidFrom: e.clock.Now().Add(-time.Hour)})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			in := e.certifyInput(t, p)
			in.Method, in.Act = entitlement.MethodFamily, relative.HolderID
			certs, err := e.svc.Certify(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			c, err := entitlement.VerifyAttestation(certs[0].Attestation, e.keys, "agency-gm", e.clock.Now())
			if err != nil || c.Act == nil || c.Act.Sub != idp.PairwiseSubject(e.pairwise, "sector-gm", relative.HolderID) || c.Method != entitlement.MethodFamily {
				t.Fatalf("family attestation %+v %v", c, err)
			}
		})
		t.Run("fail/cancelled card cannot certify", func(t *testing.T) {
			e.cancel(t, p, storage.CancelOther)
			if _, err := e.svc.Certify(ctx, e.certifyInput(t, p)); !errors.Is(err, entitlement.ErrCardNotLive) {
				t.Fatalf("Certify after cancellation = %v", err)
			}
		})
	})
}

func TestCycleThroughTheService(t *testing.T) {
	engines(t, func(t *testing.T, open func(t *testing.T) *env) {
		e := open(t)
		ctx := context.Background()
		p := e.person(t)
		b := e.register(t, "agency-gm", p, e.clock.Now()) // certified 2024-03-15: due 2025-01-31, suspended 2025-04-01
		sweep := func(want int) {
			t.Helper()
			n, err := e.svc.Sweep(ctx, 100)
			if err != nil || n != want {
				t.Fatalf("Sweep = %d, %v; want %d", n, err, want)
			}
		}
		sweep(0)
		e.clock.Set(time.Date(2025, 1, 31, 0, 0, 0, 0, entitlement.CST()))
		sweep(1)
		sweep(0) // idempotent
		e.clock.Set(time.Date(2025, 4, 1, 0, 0, 0, 0, entitlement.CST()))
		sweep(1)
		if v, _ := e.svc.Get(ctx, "agency-gm", b.ID); v.Status != entitlement.StatusSuspended {
			t.Fatalf("status %s, want suspended", v.Status)
		}
		// Restoration: a late certification in month 14.
		e.clock.Set(time.Date(2025, 5, 20, 9, 0, 0, 0, entitlement.CST()))
		if _, err := e.svc.Certify(ctx, e.certifyInput(t, p)); err != nil {
			t.Fatal(err)
		}
		v, _ := e.svc.Get(ctx, "agency-gm", b.ID)
		if v.Status != entitlement.StatusCertified || !v.ValidUntil.Equal(time.Date(2026, 6, 1, 0, 0, 0, 0, entitlement.CST())) {
			t.Fatalf("after restoration %+v", v)
		}
		// Death: terminated with reason and date, never reopened.
		e.clock.Set(time.Date(2025, 8, 3, 14, 0, 0, 0, entitlement.CST()))
		e.cancel(t, p, storage.CancelDeath)
		if n, err := e.svc.ConsumeCardEvents(ctx, 100); err != nil || n == 0 {
			t.Fatalf("ConsumeCardEvents = %d, %v", n, err)
		}
		if n, err := e.svc.ConsumeCardEvents(ctx, 100); err != nil || n != 0 {
			t.Fatalf("cursor did not advance: %d, %v", n, err)
		}
		v, _ = e.svc.Get(ctx, "agency-gm", b.ID)
		if v.Status != entitlement.StatusTerminated || v.TerminationReason != "death" || !v.TerminatedAt.Equal(e.clock.Now()) {
			t.Fatalf("after death %+v", v)
		}
		e.clock.Set(time.Date(2027, 1, 1, 0, 0, 0, 0, entitlement.CST()))
		sweep(0)
		want := []string{entitlement.EventRegistered, entitlement.EventDue, entitlement.EventSuspended, entitlement.EventCertified, entitlement.EventTerminated}
		if got := types(e.events(t, "agency-gm")); !slices.Equal(got, want) {
			t.Fatalf("feed %v, want %v", got, want)
		}
	})
}

func TestAgencyIsolationAndBatch(t *testing.T) {
	engines(t, func(t *testing.T, open func(t *testing.T) *env) {
		e := open(t)
		ctx := context.Background()
		p := e.person(t)
		b := e.register(t, "agency-gm", p, e.clock.Now())
		if _, err := e.svc.Get(ctx, "agency-intl", b.ID); !errors.Is(err, entitlement.ErrNotFound) {
			t.Fatalf("other agency Get = %v", err)
		}
		if _, err := e.svc.Update(ctx, "agency-intl", b.ID, entitlement.UpdateInput{Version: b.Version, Benefit: entitlement.BenefitWorkInjury}); !errors.Is(err, entitlement.ErrNotFound) {
			t.Fatalf("other agency Update = %v", err)
		}
		if err := e.svc.Remove(ctx, "agency-intl", b.ID); !errors.Is(err, entitlement.ErrNotFound) {
			t.Fatalf("other agency Remove = %v", err)
		}
		if _, err := e.svc.Attestation(ctx, "agency-intl", b.ID); !errors.Is(err, entitlement.ErrNotFound) {
			t.Fatalf("other agency Attestation = %v", err)
		}
		found, missing, err := e.svc.Batch(ctx, "agency-intl", []string{p.SSN})
		if err != nil || len(found) != 0 || len(missing) != 1 {
			t.Fatalf("other agency batch: %v %v %v", found, missing, err)
		}
		if _, err := e.svc.Register(ctx, "agency-gm", entitlement.RegisterInput{SSN: p.SSN, Benefit: entitlement.BenefitEnterprisePension, Anchor: e.clock.Now()}); !errors.Is(err, entitlement.ErrExists) {
			t.Fatalf("duplicate register = %v", err)
		}
		if _, err := e.svc.Update(ctx, "agency-gm", b.ID, entitlement.UpdateInput{Version: b.Version + 5}); !errors.Is(err, entitlement.ErrConflict) {
			t.Fatalf("stale update = %v", err)
		}
		if len(e.events(t, "agency-intl")) != 0 {
			t.Fatal("agency-intl sees agency-gm's events")
		}

		// Batch of 10,000: loaded in one transaction, read in one call.
		const n = 10000
		ssns := make([]string, n)
		anchor := time.Date(2023, 6, 1, 0, 0, 0, 0, entitlement.CST())
		c := entitlement.CycleFrom(anchor)
		if err := e.store.EntitlementTx(ctx, func(tx storage.EntitlementTx) error {
			for i := range ssns {
				ssns[i] = e.ssn()
				if _, err := tx.CreateBeneficiary(ctx, storage.Beneficiary{AgencyID: "agency-intl", SSN: ssns[i], Benefit: entitlement.BenefitResidentPension,
					Anchor: anchor, Status: entitlement.StatusCertified, CertifiedAt: c.CertifiedAt, DueFrom: c.DueFrom, ValidUntil: c.ValidUntil}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		query := append(slices.Clone(ssns), p.SSN) // p is agency-gm's only
		found, missing, err = e.svc.Batch(ctx, "agency-intl", query)
		if err != nil || len(found) != n || len(missing) != 1 || missing[0] != p.SSN {
			t.Fatalf("batch: found %d missing %v err %v", len(found), missing, err)
		}
		for _, v := range found[:10] {
			if v.Status != entitlement.StatusCertified || v.SSN == "" || !slices.Contains(ssns, v.SSN) {
				t.Fatalf("batch view %+v", v)
			}
		}
		// Due list for 2024-06 (valid through June 2024): pages of 3000 cover all.
		var total int
		after := ""
		for {
			page, err := e.svc.Due(ctx, "agency-intl", "2024-06", after, 3000)
			if err != nil {
				t.Fatal(err)
			}
			total += len(page)
			if len(page) < 3000 {
				break
			}
			after = page[len(page)-1].ID
		}
		if total != n {
			t.Fatalf("due list total %d, want %d", total, n)
		}
		if page, _ := e.svc.Due(ctx, "agency-intl", "2024-07", "", 10); len(page) != 0 {
			t.Fatalf("due list of another month: %d", len(page))
		}
		for _, bad := range [][]string{nil, {"123"}, {p.SSN, "11010119500101001X"}} {
			if _, _, err := e.svc.Batch(ctx, "agency-intl", bad); !errors.Is(err, entitlement.ErrInvalidRequest) {
				t.Fatalf("Batch(%v) = %v", bad, err)
			}
		}
	})
}
