package signing

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (with %w); test with errors.Is.
var (
	// ErrMalformed: the input (JWS, JWK, JWKS, PEM, state file) is not well formed.
	ErrMalformed = errors.New("signing: malformed input")
	// ErrUnsupportedAlg: the algorithm (or key type / curve) is not one of ours,
	// including "none".
	ErrUnsupportedAlg = errors.New("signing: unsupported algorithm")
	// ErrUnknownKey: no usable key for the kid (absent, pending or removed).
	ErrUnknownKey = errors.New("signing: unknown key")
	// ErrAlgMismatch: the key exists but is bound to another algorithm.
	ErrAlgMismatch = errors.New("signing: algorithm does not match key")
	// ErrInvalidSignature: the signature is not a valid signature of the input
	// (including wrong length, DER instead of R‖S, r or s out of range).
	ErrInvalidSignature = errors.New("signing: invalid signature")
	// ErrInvalidKey: the key is unusable (off curve, identity, too short RSA,
	// wrong type for the algorithm, wrong password, private material in a JWK).
	ErrInvalidKey = errors.New("signing: invalid key")
)
