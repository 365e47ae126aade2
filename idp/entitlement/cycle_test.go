package entitlement

import (
	"testing"
	"time"

	"github.com/essc-project/essc/storage"
)

func cst(y int, m time.Month, d, hh, mm int) time.Time {
	return time.Date(y, m, d, hh, mm, 0, 0, CST())
}

func TestCycleFrom(t *testing.T) {
	for _, tc := range []struct {
		name       string
		at         time.Time
		due, until time.Time
	}{
		{"ok/mid-month", cst(2024, 3, 15, 10, 0), cst(2025, 1, 31, 0, 0), cst(2025, 4, 1, 0, 0)},
		{"ok/first instant of month", cst(2024, 3, 1, 0, 0), cst(2025, 1, 31, 0, 0), cst(2025, 4, 1, 0, 0)},
		{"ok/last instant of month", time.Date(2024, 3, 31, 23, 59, 59, 999999999, CST()), cst(2025, 1, 31, 0, 0), cst(2025, 4, 1, 0, 0)},
		// 15:59 UTC on Jan 31 is 23:59 CST on Jan 31: a January certification.
		{"ok/utc evening still january in cst", time.Date(2024, 1, 31, 15, 59, 0, 0, time.UTC), cst(2024, 12, 3, 0, 0), cst(2025, 2, 1, 0, 0)},
		// 16:30 UTC on Jan 31 is 00:30 CST on Feb 1: a February certification.
		{"ok/utc evening already february in cst", time.Date(2024, 1, 31, 16, 30, 0, 0, time.UTC), cst(2024, 12, 31, 0, 0), cst(2025, 3, 1, 0, 0)},
		{"ok/other zone (new york) mapped to cst", time.Date(2024, 6, 30, 13, 0, 0, 0, time.FixedZone("EDT", -4*3600)), cst(2025, 6, 2, 0, 0), cst(2025, 8, 1, 0, 0)},
		// Due window crossing a leap February: 2024-03-01 − 60 days = 2024-01-01.
		{"ok/leap february in due window", cst(2023, 2, 15, 9, 0), cst(2024, 1, 1, 0, 0), cst(2024, 3, 1, 0, 0)},
		// Certified on Feb 29: valid through Feb 2025; 2025-03-01 − 60 = 2024-12-31.
		{"ok/certified on leap day", cst(2024, 2, 29, 12, 0), cst(2024, 12, 31, 0, 0), cst(2025, 3, 1, 0, 0)},
		{"ok/december rolls the year twice", cst(2024, 12, 31, 23, 0), cst(2025, 11, 2, 0, 0), cst(2026, 1, 1, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := CycleFrom(tc.at)
			if !c.ValidUntil.Equal(tc.until) || !c.DueFrom.Equal(tc.due) || !c.CertifiedAt.Equal(tc.at) {
				t.Fatalf("CycleFrom(%v) = due %v until %v; want due %v until %v",
					tc.at, c.DueFrom.In(CST()), c.ValidUntil.In(CST()), tc.due, tc.until)
			}
		})
	}
}

func TestStatusAt(t *testing.T) {
	c := CycleFrom(cst(2024, 3, 15, 10, 0)) // due 2025-01-31, suspended 2025-04-01
	for _, tc := range []struct {
		name string
		now  time.Time
		want Status
	}{
		{"ok/right after certification", cst(2024, 3, 15, 10, 1), StatusCertified},
		{"ok/last instant before due", cst(2025, 1, 31, 0, 0).Add(-time.Nanosecond), StatusCertified},
		{"ok/first instant of due", cst(2025, 1, 31, 0, 0), StatusDue},
		{"ok/12th month end still due", cst(2025, 3, 31, 23, 59), StatusDue},
		{"ok/month 13 suspended", cst(2025, 4, 1, 0, 0), StatusSuspended},
		{"ok/utc instant of month 13", time.Date(2025, 3, 31, 16, 0, 0, 0, time.UTC), StatusSuspended},
		{"ok/utc instant one second before month 13", time.Date(2025, 3, 31, 15, 59, 59, 0, time.UTC), StatusDue},
		{"ok/years later still suspended", cst(2030, 1, 1, 0, 0), StatusSuspended},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := StatusAt(c, tc.now); got != tc.want {
				t.Fatalf("StatusAt(%v) = %s, want %s", tc.now, got, tc.want)
			}
		})
	}
}

func ben(certified time.Time) storage.Beneficiary {
	c := CycleFrom(certified)
	return storage.Beneficiary{ID: "b1", Status: StatusCertified, CertifiedAt: c.CertifiedAt, DueFrom: c.DueFrom, ValidUntil: c.ValidUntil}
}

func TestApplyCertification(t *testing.T) {
	first := cst(2024, 3, 15, 10, 0)
	terminated := ben(first)
	terminated.Status, terminated.TerminationReason = StatusTerminated, "death"
	for _, tc := range []struct {
		name      string
		b         storage.Beneficiary
		at        time.Time
		ok        bool
		until     time.Time
		status    Status
		statusNow time.Time // Current at this instant
	}{
		{"ok/early certification (still certified) restarts from its own month", ben(first), cst(2024, 9, 2, 8, 0), true, cst(2025, 10, 1, 0, 0), StatusCertified, cst(2025, 4, 2, 0, 0)},
		{"ok/certification in due period", ben(first), cst(2025, 2, 10, 8, 0), true, cst(2026, 3, 1, 0, 0), StatusCertified, cst(2025, 2, 10, 9, 0)},
		{"ok/late certification restores a suspended beneficiary", ben(first), cst(2025, 7, 20, 8, 0), true, cst(2026, 8, 1, 0, 0), StatusCertified, cst(2025, 7, 20, 9, 0)},
		{"ok/out-of-order older certification keeps the later cycle", ben(first), cst(2024, 1, 5, 8, 0), true, cst(2025, 4, 1, 0, 0), StatusCertified, cst(2024, 3, 16, 0, 0)},
		{"fail/terminated never reopened", terminated, cst(2024, 5, 1, 8, 0), false, cst(2025, 4, 1, 0, 0), StatusTerminated, cst(2024, 5, 1, 9, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.b.Status != StatusTerminated && tc.name[:4] == "ok/l" {
				if s := Current(tc.b, tc.at); s != StatusSuspended {
					t.Fatalf("precondition: status before late certification = %s, want suspended", s)
				}
			}
			got, ok := ApplyCertification(tc.b, tc.at, "app", "")
			if ok != tc.ok || !got.ValidUntil.Equal(tc.until) || got.Status != tc.status {
				t.Fatalf("ApplyCertification = ok %v until %v status %s; want ok %v until %v status %s",
					ok, got.ValidUntil.In(CST()), got.Status, tc.ok, tc.until, tc.status)
			}
			if s := Current(got, tc.statusNow); s != tc.status {
				t.Fatalf("Current at %v = %s, want %s", tc.statusNow, s, tc.status)
			}
		})
	}
}

func TestApplyTermination(t *testing.T) {
	b := ben(cst(2024, 3, 15, 10, 0))
	at := cst(2024, 8, 3, 14, 0)
	got, changed := ApplyTermination(b, at, "death")
	if !changed || got.Status != StatusTerminated || got.TerminationReason != "death" || !got.TerminatedAt.Equal(at) {
		t.Fatalf("ApplyTermination = %+v, %v", got, changed)
	}
	again, changed := ApplyTermination(got, at.AddDate(0, 1, 0), "emigration")
	if changed || again.TerminationReason != "death" || !again.TerminatedAt.Equal(at) {
		t.Fatalf("second termination changed the record: %+v", again)
	}
	if s := Current(got, cst(2024, 3, 16, 0, 0)); s != StatusTerminated {
		t.Fatalf("Current of terminated = %s", s)
	}
	if _, ok := ApplyCertification(got, at.Add(time.Hour), "app", ""); ok {
		t.Fatal("certification reopened a terminated beneficiary")
	}
}
