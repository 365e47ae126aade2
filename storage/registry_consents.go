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

// ConsentsWithCards is Consents on a registry that also holds the cards:
// the login's completion reads the holder's e-card, its card and the grant
// to the relying party together.
type ConsentsWithCards interface {
	Consents
	// ECardWithCardAndGrant returns what RegistryReader.ECardWithCard
	// returns for ecardID and, in the same read, the scopes the e-card's
	// holder granted clientID, sorted (nil if none). ErrNotFound for an
	// unknown e-card.
	ECardWithCardAndGrant(ctx context.Context, ecardID, clientID string) (ECard, Card, []string, error)
}
