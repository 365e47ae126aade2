package storage

import "context"

// Consents remembers which scopes a holder granted to a relying party (the
// SQL registry implements it; idp.ConsentStore is the same contract).
type Consents interface {
	// Granted returns the scopes holderID granted to clientID, sorted (nil
	// if none).
	Granted(ctx context.Context, holderID, clientID string) ([]string, error)
	// Grant adds scopes to the remembered grant (idempotent; the union is
	// kept). An empty holder or client id is ErrInvalidRecord.
	Grant(ctx context.Context, holderID, clientID string, scopes []string) error
}
