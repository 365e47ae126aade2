package card

import (
	"fmt"

	"github.com/essc-project/essc/storage"
)

// Action names a lifecycle action. The same names are the audit log's
// Action values and the delegation scopes.
type Action string

// Card actions (physical card machine).
const (
	ActionIssueCard  Action = "card.issue"
	ActionReportLoss Action = "card.report_loss"
	ActionUnfreeze   Action = "card.unfreeze"
	ActionReplace    Action = "card.replace"
	ActionCancel     Action = "card.cancel"
	ActionUnlockPIN  Action = "pin.unlock"
	ActionResetPIN   Action = "pin.reset"
	ActionChangePIN  Action = "pin.change"
	ActionVerifyPIN  Action = "pin.verify"
	ActionApplyECard Action = "ecard.apply"
)

// E-card actions (e-card machine).
const (
	ActionSuspendECard Action = "ecard.suspend"
	ActionResumeECard  Action = "ecard.resume"
	ActionRevokeECard  Action = "ecard.revoke"
	// ActionActivateBank raises the e-card to level 2 (bank-linked
	// payments). Agents may never do it (DESIGN.md §1).
	ActionActivateBank Action = "ecard.activate_bank"
	ActionBindDevice   Action = "device.bind"
	ActionUnbindDevice Action = "device.unbind"
	// ActionUseECard is any use of the e-card as a credential: login,
	// eligibility certification, presentation code.
	ActionUseECard Action = "ecard.use"
)

// Other audited actions.
const (
	ActionDelegate       Action = "delegation.create"
	ActionRevokeDelegate Action = "delegation.revoke"
)

// cardTable is the physical card state machine: for each action, the states
// it is allowed in and the state it leads to. An action absent for a state is
// forbidden. Replaced and cancelled are terminal.
//
//	active ──report_loss──► lost ──unfreeze──► active
//	active|lost ──replace──► replaced      active|lost ──cancel(reason)──► cancelled
var cardTable = map[Action]map[storage.CardStatus]storage.CardStatus{
	ActionReportLoss: {storage.CardActive: storage.CardLost},
	ActionUnfreeze:   {storage.CardLost: storage.CardActive},
	ActionReplace:    {storage.CardActive: storage.CardReplaced, storage.CardLost: storage.CardReplaced},
	ActionCancel:     {storage.CardActive: storage.CardCancelled, storage.CardLost: storage.CardCancelled},
	// Outlet PIN service works on a lost card too (the holder may unfreeze next).
	ActionUnlockPIN: {storage.CardActive: storage.CardActive, storage.CardLost: storage.CardLost},
	ActionResetPIN:  {storage.CardActive: storage.CardActive, storage.CardLost: storage.CardLost},
	// Holder actions need an active card.
	ActionChangePIN:  {storage.CardActive: storage.CardActive},
	ActionVerifyPIN:  {storage.CardActive: storage.CardActive},
	ActionApplyECard: {storage.CardActive: storage.CardActive},
}

// ecardTable is the e-card state machine. Revoked is terminal; a suspended
// e-card may only be resumed (card unfrozen) or revoked.
//
//	active ──suspend──► suspended ──resume──► active
//	active|suspended ──revoke──► revoked
var ecardTable = map[Action]map[storage.ECardStatus]storage.ECardStatus{
	ActionSuspendECard: {storage.ECardActive: storage.ECardSuspended},
	ActionResumeECard:  {storage.ECardSuspended: storage.ECardActive},
	ActionRevokeECard:  {storage.ECardActive: storage.ECardRevoked, storage.ECardSuspended: storage.ECardRevoked},
	ActionActivateBank: {storage.ECardActive: storage.ECardActive},
	ActionBindDevice:   {storage.ECardActive: storage.ECardActive},
	// Unbinding a device (e.g. a stolen phone) stays possible while suspended.
	ActionUnbindDevice: {storage.ECardActive: storage.ECardActive, storage.ECardSuspended: storage.ECardSuspended},
	ActionUseECard:     {storage.ECardActive: storage.ECardActive},
}

// TransitionError is a state-machine refusal. It matches
// ErrForbiddenTransition with errors.Is.
type TransitionError struct {
	Machine string // "card" or "ecard"
	From    string // the current state
	Action  Action
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("card: %s not allowed: %s is %s", e.Action, e.Machine, e.From)
}

// Is makes errors.Is(err, ErrForbiddenTransition) true.
func (e *TransitionError) Is(target error) bool { return target == ErrForbiddenTransition }

// CardTransition returns the state a card in state from moves to under a,
// or a *TransitionError when the table forbids it (including unknown
// actions and states).
func CardTransition(from storage.CardStatus, a Action) (storage.CardStatus, error) {
	if to, ok := cardTable[a][from]; ok {
		return to, nil
	}
	return "", &TransitionError{Machine: "card", From: string(from), Action: a}
}

// ECardTransition is CardTransition for the e-card machine.
func ECardTransition(from storage.ECardStatus, a Action) (storage.ECardStatus, error) {
	if to, ok := ecardTable[a][from]; ok {
		return to, nil
	}
	return "", &TransitionError{Machine: "ecard", From: string(from), Action: a}
}

// ValidCancelReason reports whether r is one of death, emigration, other.
func ValidCancelReason(r storage.CancelReason) bool {
	switch r {
	case storage.CancelDeath, storage.CancelEmigration, storage.CancelOther:
		return true
	}
	return false
}
