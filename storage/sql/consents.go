package sql

import (
	"context"
	dbsql "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/essc-project/essc/storage"
)

var _ storage.ConsentsWithCards = (*Store)(nil)

// Granted implements storage.Consents.
func (s *Store) Granted(ctx context.Context, holderID, clientID string) ([]string, error) {
	var scopes string
	err := s.q.queryRow(ctx, `SELECT scopes FROM consents WHERE holder_id = ? AND client_id = ?`, holderID, clientID).Scan(&scopes)
	if errors.Is(err, dbsql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sql: consent: %w", s.mapErr(err))
	}
	return strings.Fields(scopes), nil
}

// ecardWithCardAndGrantQuery is ecardWithCardQuery with the holder's grant
// to a client (its first argument) joined on the consents' primary key.
var ecardWithCardAndGrantQuery = `SELECT ` + qualify("e", ecardCols) + `, ` + qualify("c", cardCols) + `, COALESCE(g.scopes, '')` +
	` FROM ecards e JOIN cards c ON c.id = e.card_id LEFT JOIN consents g ON g.holder_id = e.holder_id AND g.client_id = ? WHERE e.id = ?`

// ECardWithCardAndGrant implements storage.ConsentsWithCards.
func (s *Store) ECardWithCardAndGrant(ctx context.Context, ecardID, clientID string) (storage.ECard, storage.Card, []string, error) {
	var scopes string
	e, c, err := s.q.scanECardWithCard(s.q.queryRow(ctx, ecardWithCardAndGrantQuery, clientID, ecardID), &scopes)
	if err != nil {
		return storage.ECard{}, storage.Card{}, nil, err
	}
	var granted []string
	if scopes != "" {
		granted = strings.Fields(scopes)
	}
	return e, c, granted, nil
}

// Grant implements storage.Consents: the union of the stored and the new
// scopes, in one transaction with its audit entry; nothing is written when
// every scope was granted already.
func (s *Store) Grant(ctx context.Context, holderID, clientID string, scopes []string) error {
	if holderID == "" || clientID == "" {
		return fmt.Errorf("sql: consent without holder or client: %w", storage.ErrInvalidRecord)
	}
	for _, sc := range scopes {
		if sc == "" || strings.ContainsAny(sc, " \t\n") {
			return fmt.Errorf("sql: consent scope %q: %w", sc, storage.ErrInvalidRecord)
		}
	}
	return s.Tx(ctx, func(tx storage.RegistryTx) error {
		t := tx.(*q)
		var stored string
		err := t.queryRow(ctx, `SELECT scopes FROM consents WHERE holder_id = ? AND client_id = ?`, holderID, clientID).Scan(&stored)
		if err != nil && !errors.Is(err, dbsql.ErrNoRows) {
			return t.s.mapErr(err)
		}
		have := strings.Fields(stored)
		union := slices.Concat(have, scopes)
		slices.Sort(union)
		union = slices.Compact(union)
		if len(union) == len(have) {
			return nil // nothing new
		}
		if _, err := t.exec(ctx, `INSERT INTO consents (holder_id, client_id, scopes, granted_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (holder_id, client_id) DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at`,
			holderID, clientID, strings.Join(union, " "), t.nowMicros()); err != nil {
			return err
		}
		details, _ := json.Marshal(map[string]any{"client_id": clientID, "scopes": union})
		_, err = t.AppendAudit(ctx, storage.AuditEntry{Actor: "holder:" + holderID, Action: "consent.grant", Target: "client:" + clientID, Details: details})
		return err
	})
}
