package card

import (
	"errors"
	"fmt"
)

// Validation errors. Every specific error wraps its family's sentinel, so
// errors.Is(err, ErrInvalidSSN) holds for any SSN problem and
// errors.Is(err, ErrSSNChecksum) only for a bad check character.
var (
	// ErrInvalidSSN is the family of social security number errors.
	ErrInvalidSSN = errors.New("card: invalid social security number")
	// ErrSSNFormat: not 17 digits followed by a digit or X.
	ErrSSNFormat = fmt.Errorf("%w: must be 17 digits and a digit or X", ErrInvalidSSN)
	// ErrSSNChecksum: the ISO 7064 MOD 11-2 check character does not match.
	ErrSSNChecksum = fmt.Errorf("%w: check character mismatch", ErrInvalidSSN)
	// ErrSSNRegion: the first six digits are not a plausible division code.
	ErrSSNRegion = fmt.Errorf("%w: unknown region prefix", ErrInvalidSSN)
	// ErrSSNBirthDate: digits 7–14 are not a real date in [1900-01-01, today].
	ErrSSNBirthDate = fmt.Errorf("%w: invalid birth date", ErrInvalidSSN)

	// ErrInvalidCardNumber: not 9 characters of [0-9A-Z].
	ErrInvalidCardNumber = errors.New("card: invalid card number")
	// ErrInvalidRegion: not a 6-digit division code with a known province.
	ErrInvalidRegion = errors.New("card: invalid region code")
	// ErrInvalidName: empty, too long, or containing control characters.
	ErrInvalidName = errors.New("card: invalid name")
	// ErrInvalidRequest: a request field is missing or malformed (the wrapped
	// message names the field, never its value).
	ErrInvalidRequest = errors.New("card: invalid request")
)

// Lifecycle errors.
var (
	// ErrForbiddenTransition is the family of state-machine refusals; the
	// concrete error is a *TransitionError naming the machine, state and action.
	ErrForbiddenTransition = errors.New("card: action not allowed in this state")
	// ErrConflict: another writer changed the card (or e-card) since the
	// caller's view (the expected version), or won a race for it. Re-read.
	ErrConflict = errors.New("card: concurrent modification")
	// ErrNotFound: no such card, e-card, holder, device or delegation. Only
	// authenticated callers (outlets) see it; see ErrAuthFailed.
	ErrNotFound = errors.New("card: not found")
	// ErrExists: the card number, SSN holder card, device key or live e-card
	// already exists.
	ErrExists = errors.New("card: already exists")
	// ErrMismatch: the identity data presented (SSN, name) does not match the
	// card. Returned only to authenticated callers; unauthenticated flows
	// return ErrAuthFailed instead.
	ErrMismatch = errors.New("card: identity data does not match the card")
	// ErrDeviceLimit: the e-card already has the maximum number of live devices.
	ErrDeviceLimit = errors.New("card: device limit reached")
	// ErrUnavailable: the registry cannot be reached; callers answer 503 /
	// temporarily_unavailable, never a client error.
	ErrUnavailable = errors.New("card: registry unavailable")
)

// PIN errors.
var (
	// ErrAuthFailed is the ONE error an unauthenticated caller sees for an
	// unknown card, a wrong PIN, a locked PIN or a card/e-card that cannot be
	// used: the cases are indistinguishable on the wire. Details are logged.
	ErrAuthFailed = errors.New("card: card number or PIN incorrect")
	// ErrMustChangePIN: the PIN was correct but is the initial or an
	// outlet-reset PIN; nothing (code, token, session) may be issued until
	// the holder changes it. Returned together with a usable result.
	ErrMustChangePIN = errors.New("card: PIN must be changed first")
	// ErrWeakPIN is the family of new-PIN policy refusals.
	ErrWeakPIN = errors.New("card: PIN not allowed")
	// ErrPINFormat: not exactly 6 ASCII digits.
	ErrPINFormat = fmt.Errorf("%w: must be 6 digits", ErrWeakPIN)
	// ErrPINInitial: the initial PIN 123456.
	ErrPINInitial = fmt.Errorf("%w: the initial PIN cannot be kept", ErrWeakPIN)
	// ErrPINRepeated: all six digits equal.
	ErrPINRepeated = fmt.Errorf("%w: repeated digits", ErrWeakPIN)
	// ErrPINSequence: an ascending or descending run such as 345678 or 987654.
	ErrPINSequence = fmt.Errorf("%w: sequential digits", ErrWeakPIN)
	// ErrPINBirthDate: a fragment of the holder's birth date.
	ErrPINBirthDate = fmt.Errorf("%w: birth date fragment", ErrWeakPIN)
	// ErrPINSSNSuffix: the last six characters of the SSN.
	ErrPINSSNSuffix = fmt.Errorf("%w: last six of the social security number", ErrWeakPIN)
	// ErrPINUnchanged: the new PIN equals the current one.
	ErrPINUnchanged = fmt.Errorf("%w: same as the current PIN", ErrWeakPIN)
)

// Delegation errors.
var (
	// ErrNotDelegated: no valid delegation covers the action (none registered,
	// revoked, expired, outside its scopes).
	ErrNotDelegated = errors.New("card: not authorised to act for this holder")
	// ErrDelegationRule: the delegation itself breaks a rule (guardian for an
	// adult with capacity, agent scope including bank activation, self-delegation).
	ErrDelegationRule = errors.New("card: delegation not allowed")

	// ErrNotUsable (wrapped, with the reason) is Usable's answer for an
	// e-card that may not be used to sign in, confirm or present.
	ErrNotUsable = errors.New("card: card or e-card not active")
)
