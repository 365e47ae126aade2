package card

import (
	"fmt"
	"slices"
	"time"

	"github.com/essc-project/essc/storage"
)

// DelegableActions are the actions a delegation may cover. ActionActivateBank
// is listed because a guardian may do it for a minor; an agent delegation
// including it is refused (ErrDelegationRule).
var delegable = []Action{
	ActionReportLoss, ActionChangePIN, ActionApplyECard, ActionBindDevice,
	ActionUnbindDevice, ActionUseECard, ActionActivateBank,
}

// DelegableActions returns the actions a delegation's Scopes may name.
func DelegableActions() []Action { return slices.Clone(delegable) }

// DelegationRequest is what an outlet registers: Agent acts for Principal.
type DelegationRequest struct {
	Principal SSN
	Agent     SSN
	Kind      string // storage.DelegationGuardian | storage.DelegationAgent
	// Scopes are the delegated actions; empty means every delegable action
	// the kind allows.
	Scopes []Action
	// LacksCapacity records the outlet's check of a court decision or
	// medical certificate that the adult principal lacks full capacity; it
	// is what allows a guardian for an adult. Evidence is the document's
	// reference number (audited, never the document).
	LacksCapacity bool
	Evidence      string
	// ValidUntil ends the delegation; zero means open-ended for an agent and
	// the principal's 18th birthday for a guardian of a minor.
	ValidUntil time.Time
}

// CheckDelegation applies the delegation rules at now and returns the
// effective scopes and validity end:
//   - nobody delegates to themselves;
//   - guardian: the principal is a minor (age < 18 from the SSN birth date)
//     or LacksCapacity is set with Evidence; for a minor the delegation ends
//     no later than the 18th birthday;
//   - agent: the principal is an adult (minors act through a guardian), the
//     Evidence of the registered authorisation is present, and the scopes
//     exclude bank-account activation;
//   - every scope is a delegable action.
//
// Violations wrap ErrDelegationRule.
func CheckDelegation(r DelegationRequest, now time.Time) ([]Action, time.Time, error) {
	if r.Principal.IsZero() || r.Agent.IsZero() {
		return nil, time.Time{}, fmt.Errorf("%w: principal and agent are required", ErrDelegationRule)
	}
	if r.Principal.Raw() == r.Agent.Raw() {
		return nil, time.Time{}, fmt.Errorf("%w: self-delegation", ErrDelegationRule)
	}
	if r.Agent.IsMinorAt(now) {
		return nil, time.Time{}, fmt.Errorf("%w: the agent must be an adult", ErrDelegationRule)
	}
	for _, s := range r.Scopes {
		if !slices.Contains(delegable, s) {
			return nil, time.Time{}, fmt.Errorf("%w: scope %q is not delegable", ErrDelegationRule, s)
		}
	}
	until := r.ValidUntil
	if !until.IsZero() && !until.After(now) {
		return nil, time.Time{}, fmt.Errorf("%w: validity already ended", ErrDelegationRule)
	}
	scopes := slices.Clone(r.Scopes)
	switch r.Kind {
	case storage.DelegationGuardian:
		minor := r.Principal.IsMinorAt(now)
		if !minor && !(r.LacksCapacity && r.Evidence != "") {
			return nil, time.Time{}, fmt.Errorf("%w: a guardian needs a minor or a principal without capacity (with evidence)", ErrDelegationRule)
		}
		if minor && !r.LacksCapacity {
			if adult := r.Principal.AdultOn(); until.IsZero() || until.After(adult) {
				until = adult
			}
		}
		if len(scopes) == 0 {
			scopes = slices.Clone(delegable)
		}
	case storage.DelegationAgent:
		if r.Principal.IsMinorAt(now) {
			return nil, time.Time{}, fmt.Errorf("%w: a minor acts through a guardian", ErrDelegationRule)
		}
		if r.Evidence == "" {
			return nil, time.Time{}, fmt.Errorf("%w: an agent needs a registered authorisation", ErrDelegationRule)
		}
		if slices.Contains(scopes, ActionActivateBank) {
			return nil, time.Time{}, fmt.Errorf("%w: agents cannot activate bank functions", ErrDelegationRule)
		}
		if len(scopes) == 0 {
			for _, a := range delegable {
				if a != ActionActivateBank {
					scopes = append(scopes, a)
				}
			}
		}
	default:
		return nil, time.Time{}, fmt.Errorf("%w: unknown kind", ErrDelegationRule)
	}
	return scopes, until, nil
}

// Permits reports whether delegation d lets its agent perform a for its
// principal at now: not revoked, within [ValidFrom, ValidUntil), a covered
// scope, and never bank activation for an agent (re-checked here so a
// record written by anything else cannot widen it). It returns nil or an
// error wrapping ErrNotDelegated.
func Permits(d storage.Delegation, a Action, now time.Time) error {
	switch {
	case !d.RevokedAt.IsZero():
		return fmt.Errorf("%w: revoked", ErrNotDelegated)
	case now.Before(d.ValidFrom):
		return fmt.Errorf("%w: not yet valid", ErrNotDelegated)
	case !d.ValidUntil.IsZero() && !now.Before(d.ValidUntil):
		return fmt.Errorf("%w: expired", ErrNotDelegated)
	case d.Kind == storage.DelegationAgent && a == ActionActivateBank:
		return fmt.Errorf("%w: agents cannot activate bank functions", ErrNotDelegated)
	case d.Kind != storage.DelegationAgent && d.Kind != storage.DelegationGuardian:
		return fmt.Errorf("%w: unknown kind", ErrNotDelegated)
	case !slices.Contains(d.Scopes, string(a)):
		return fmt.Errorf("%w: %s not in scope", ErrNotDelegated, a)
	}
	return nil
}
