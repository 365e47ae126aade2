package entitlement

import (
	"time"

	"github.com/essc-project/essc/storage"
)

// Status is a beneficiary's eligibility status (storage.EntitlementStatus).
type Status = storage.EntitlementStatus

// Statuses (DESIGN.md §8).
const (
	StatusCertified  = storage.EntitlementCertified
	StatusDue        = storage.EntitlementDue
	StatusSuspended  = storage.EntitlementSuspended
	StatusTerminated = storage.EntitlementTerminated
)

// DueWindowDays is the length of the due period before suspension.
const DueWindowDays = 60

// CST returns China Standard Time (Asia/Shanghai): UTC+8, no daylight saving
// since 1991. A fixed zone, so the rules never depend on the host's tzdata.
func CST() *time.Location { return time.FixedZone("CST", 8*60*60) }

// Cycle is the validity of one certification.
type Cycle struct {
	// CertifiedAt is the certification instant (or the registration anchor).
	CertifiedAt time.Time
	// DueFrom is the first instant of the due period: ValidUntil − 60 days
	// (calendar days in CST).
	DueFrom time.Time
	// ValidUntil is the EXCLUSIVE end of validity: 00:00 CST on the first day
	// of the 13th month after the certification's month, i.e. validity runs
	// through the end of the 12th month after it.
	ValidUntil time.Time
}

// CycleFrom returns the cycle started by a certification at t (any zone;
// the month is taken in CST).
func CycleFrom(t time.Time) Cycle {
	cst := CST()
	l := t.In(cst)
	month := time.Date(l.Year(), l.Month(), 1, 0, 0, 0, 0, cst)
	until := month.AddDate(0, 13, 0)
	return Cycle{
		CertifiedAt: t.UTC(),
		DueFrom:     until.AddDate(0, 0, -DueWindowDays).UTC(),
		ValidUntil:  until.UTC(),
	}
}

// StatusAt is the status of a non-terminated beneficiary with cycle c at now.
func StatusAt(c Cycle, now time.Time) Status {
	switch {
	case !now.Before(c.ValidUntil):
		return StatusSuspended
	case !now.Before(c.DueFrom):
		return StatusDue
	default:
		return StatusCertified
	}
}

// Current is b's status at now: terminated stays terminated, otherwise it is
// derived from the stored cycle (so a read is right even if the sweeper that
// emits due/suspended events lags).
func Current(b storage.Beneficiary, now time.Time) Status {
	if b.Status == StatusTerminated {
		return StatusTerminated
	}
	return StatusAt(Cycle{CertifiedAt: b.CertifiedAt, DueFrom: b.DueFrom, ValidUntil: b.ValidUntil}, now)
}

// ApplyCertification returns b after a certification at t. A terminated
// beneficiary is never reopened (ok=false). A certification older than the
// stored one (out-of-order delivery) keeps the later cycle.
func ApplyCertification(b storage.Beneficiary, t time.Time, method, act string) (storage.Beneficiary, bool) {
	if b.Status == StatusTerminated {
		return b, false
	}
	if t.Before(b.CertifiedAt) {
		t = b.CertifiedAt
	}
	c := CycleFrom(t)
	b.CertifiedAt, b.DueFrom, b.ValidUntil = c.CertifiedAt, c.DueFrom, c.ValidUntil
	b.Method, b.Act = method, act
	b.Status = StatusAt(c, t)
	return b, true
}

// ApplyTermination returns b terminated at t for reason; a beneficiary
// already terminated keeps its first reason and date (changed=false).
func ApplyTermination(b storage.Beneficiary, t time.Time, reason string) (storage.Beneficiary, bool) {
	if b.Status == StatusTerminated {
		return b, false
	}
	b.Status, b.TerminatedAt, b.TerminationReason = StatusTerminated, t.UTC(), reason
	return b, true
}
