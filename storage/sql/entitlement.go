package sql

import (
	"context"
	dbsql "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/essc-project/essc/storage"
)

// The entitlement store (storage.Entitlements) on the same database as the
// registry: beneficiaries keyed by the same HMAC-SM3 blind index as holders
// (the SSN itself is never stored here), a per-agency event feed whose Seq
// comes from a locked counter row (commit order), and webhook cursors leased
// to one dispatcher at a time.

var (
	_ storage.Entitlements      = (*Store)(nil)
	_ storage.EntitlementTx     = (*q)(nil)
	_ storage.EntitlementReader = (*q)(nil)
)

const benCols = `id, agency_id, ssn_masked, holder_id, benefit, anchor, status, certified_at, due_from, valid_until,
	method, act, terminated_at, termination_reason, version, created_at, updated_at`

func scanBeneficiary(row interface{ Scan(...any) error }, extra ...any) (storage.Beneficiary, error) {
	var b storage.Beneficiary
	var anchor, cert, due, valid, term, created, updated int64
	dest := []any{&b.ID, &b.AgencyID, &b.SSNMasked, &b.HolderID, &b.Benefit, &anchor, &b.Status, &cert, &due, &valid,
		&b.Method, &b.Act, &term, &b.TerminationReason, &b.Version, &created, &updated}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return b, err
	}
	b.Anchor, b.CertifiedAt, b.DueFrom, b.ValidUntil = fromMicros(anchor), fromMicros(cert), fromMicros(due), fromMicros(valid)
	b.TerminatedAt, b.CreatedAt, b.UpdatedAt = fromMicros(term), fromMicros(created), fromMicros(updated)
	return b, nil
}

func (r *q) beneficiaries(ctx context.Context, query string, args ...any) ([]storage.Beneficiary, error) {
	rows, err := r.db.QueryContext(ctx, r.s.rebind(query), args...)
	if err != nil {
		return nil, r.s.mapErr(err)
	}
	defer rows.Close()
	out := []storage.Beneficiary{}
	for rows.Next() {
		b, err := scanBeneficiary(rows)
		if err != nil {
			return nil, r.s.mapErr(err)
		}
		out = append(out, b)
	}
	return out, r.s.mapErr(rows.Err())
}

// EntitlementTx implements storage.Entitlements.
func (s *Store) EntitlementTx(ctx context.Context, fn func(tx storage.EntitlementTx) error) error {
	return s.Tx(ctx, func(tx storage.RegistryTx) error { return fn(tx.(*q)) })
}

// Beneficiary implements storage.EntitlementReader (with the attestation).
func (r *q) Beneficiary(ctx context.Context, agencyID, id string) (storage.Beneficiary, error) {
	b, err := scanBeneficiary(r.queryRow(ctx, `SELECT `+benCols+` FROM beneficiaries WHERE id = ? AND agency_id = ?`, id, agencyID))
	if err != nil {
		return b, fmt.Errorf("sql: beneficiary: %w", r.s.mapErr(err))
	}
	err = r.queryRow(ctx, `SELECT attestation FROM beneficiary_attestations WHERE beneficiary_id = ?`, id).Scan(&b.Attestation)
	if err != nil && !errors.Is(err, dbsql.ErrNoRows) {
		return b, fmt.Errorf("sql: beneficiary attestation: %w", r.s.mapErr(err))
	}
	return b, nil
}

// BeneficiariesOfSSN implements storage.EntitlementReader.
func (r *q) BeneficiariesOfSSN(ctx context.Context, ssn string) ([]storage.Beneficiary, error) {
	return r.beneficiaries(ctx, `SELECT `+benCols+` FROM beneficiaries WHERE ssn_index = ? ORDER BY created_at, id`, r.s.blindIndex(ssn))
}

// CreateBeneficiary implements storage.EntitlementTx.
func (r *q) CreateBeneficiary(ctx context.Context, b storage.Beneficiary) (storage.Beneficiary, error) {
	if b.AgencyID == "" || b.SSN == "" || b.Benefit == "" || b.Status == "" {
		return b, fmt.Errorf("sql: beneficiary without agency, ssn, benefit or status: %w", storage.ErrInvalidRecord)
	}
	if b.ID == "" {
		b.ID = newID()
	}
	b.SSN = normalizeSSN(b.SSN)
	b.SSNMasked = maskSSN(b.SSN)
	now := r.nowMicros()
	b.Version, b.CreatedAt, b.UpdatedAt = 1, fromMicros(now), fromMicros(now)
	_, err := r.exec(ctx, `INSERT INTO beneficiaries (id, agency_id, ssn_index, ssn_masked, holder_id, benefit, anchor, status,
		certified_at, due_from, valid_until, method, act, terminated_at, termination_reason, version, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		b.ID, b.AgencyID, r.s.blindIndex(b.SSN), b.SSNMasked, b.HolderID, b.Benefit, micros(b.Anchor), string(b.Status),
		micros(b.CertifiedAt), micros(b.DueFrom), micros(b.ValidUntil), b.Method, b.Act,
		micros(b.TerminatedAt), b.TerminationReason, b.Version, now, now)
	if err != nil {
		return storage.Beneficiary{}, fmt.Errorf("sql: create beneficiary: %w", err)
	}
	if err := r.putAttestation(ctx, b.ID, b.Attestation); err != nil {
		return storage.Beneficiary{}, err
	}
	if _, err := r.exec(ctx, `INSERT INTO webhook_state (agency_id) VALUES (?) ON CONFLICT (agency_id) DO NOTHING`, b.AgencyID); err != nil {
		return storage.Beneficiary{}, fmt.Errorf("sql: webhook state: %w", err)
	}
	return b, nil
}

// UpdateBeneficiary implements storage.EntitlementTx.
func (r *q) UpdateBeneficiary(ctx context.Context, b storage.Beneficiary) (storage.Beneficiary, error) {
	now := r.nowMicros()
	res, err := r.exec(ctx, `UPDATE beneficiaries SET holder_id = ?, benefit = ?, anchor = ?, status = ?, certified_at = ?,
		due_from = ?, valid_until = ?, method = ?, act = ?, terminated_at = ?, termination_reason = ?,
		version = version + 1, updated_at = ? WHERE id = ? AND agency_id = ? AND version = ?`,
		b.HolderID, b.Benefit, micros(b.Anchor), string(b.Status), micros(b.CertifiedAt), micros(b.DueFrom),
		micros(b.ValidUntil), b.Method, b.Act, micros(b.TerminatedAt), b.TerminationReason,
		now, b.ID, b.AgencyID, b.Version)
	if err != nil {
		return storage.Beneficiary{}, fmt.Errorf("sql: update beneficiary: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return storage.Beneficiary{}, r.s.mapErr(err)
	}
	if n == 0 {
		if _, err := r.Beneficiary(ctx, b.AgencyID, b.ID); err != nil {
			return storage.Beneficiary{}, err
		}
		return storage.Beneficiary{}, fmt.Errorf("sql: beneficiary %s: %w", b.ID, storage.ErrConflict)
	}
	if err := r.putAttestation(ctx, b.ID, b.Attestation); err != nil {
		return storage.Beneficiary{}, err
	}
	b.Version++
	b.UpdatedAt = fromMicros(now)
	return b, nil
}

// DeleteBeneficiary implements storage.EntitlementTx.
func (r *q) DeleteBeneficiary(ctx context.Context, agencyID, id string) error {
	if err := r.execOne(ctx, `DELETE FROM beneficiaries WHERE id = ? AND agency_id = ?`, id, agencyID); err != nil {
		return fmt.Errorf("sql: delete beneficiary: %w", err)
	}
	_, err := r.exec(ctx, `DELETE FROM beneficiary_attestations WHERE beneficiary_id = ?`, id)
	return err
}

// putAttestation stores a non-empty attestation beside the row (upsert).
func (r *q) putAttestation(ctx context.Context, id, att string) error {
	if att == "" {
		return nil
	}
	_, err := r.exec(ctx, `INSERT INTO beneficiary_attestations (beneficiary_id, attestation) VALUES (?, ?)
		ON CONFLICT (beneficiary_id) DO UPDATE SET attestation = excluded.attestation`, id, att)
	if err != nil {
		return fmt.Errorf("sql: beneficiary attestation: %w", err)
	}
	return nil
}

// AppendEntitlementEvent implements storage.EntitlementTx. The counter row
// stays locked until commit, so Seqs become visible in increasing order.
func (r *q) AppendEntitlementEvent(ctx context.Context, e storage.EntitlementEvent) (storage.EntitlementEvent, error) {
	if e.Type == "" || e.AgencyID == "" {
		return e, fmt.Errorf("sql: entitlement event without type or agency: %w", storage.ErrInvalidRecord)
	}
	if len(e.Payload) == 0 {
		e.Payload = json.RawMessage(`{}`)
	}
	if !json.Valid(e.Payload) {
		return e, fmt.Errorf("sql: entitlement event payload is not JSON: %w", storage.ErrInvalidRecord)
	}
	err := r.inTx(ctx, func(t *q) error {
		if err := t.queryRow(ctx, `UPDATE counters SET value = value + 1 WHERE name = 'entitlement' RETURNING value`).Scan(&e.Seq); err != nil {
			return t.s.mapErr(err)
		}
		e.At = fromMicros(t.nowMicros())
		_, err := t.exec(ctx, `INSERT INTO entitlement_events (seq, agency_id, beneficiary_id, type, payload, at) VALUES (?, ?, ?, ?, ?, ?)`,
			e.Seq, e.AgencyID, e.BeneficiaryID, e.Type, string(e.Payload), micros(e.At))
		return err
	})
	if err != nil {
		return storage.EntitlementEvent{}, fmt.Errorf("sql: append entitlement event: %w", err)
	}
	return e, nil
}

// pgChunk and pgParallel shape a PostgreSQL batch read (see BeneficiariesBySSN).
const (
	pgChunk    = 2500
	pgParallel = 4
)

// sqliteBatch bounds the IN list per statement on SQLite (its variable limit
// is 32766; smaller chunks keep statement preparation cheap).
const sqliteBatch = 2000

// BeneficiariesBySSN implements storage.Entitlements: `= ANY($2)` queries of
// pgChunk keys on PostgreSQL (concurrently), IN lists of sqliteBatch on SQLite.
func (s *Store) BeneficiariesBySSN(ctx context.Context, agencyID string, ssns []string) ([]storage.Beneficiary, error) {
	byIndex := make(map[string]string, len(ssns))
	idx := make([][]byte, 0, len(ssns))
	for _, ssn := range ssns {
		bi := s.blindIndex(ssn)
		if _, dup := byIndex[string(bi)]; dup {
			continue
		}
		byIndex[string(bi)] = ssn
		idx = append(idx, bi)
	}
	var mu sync.Mutex
	out := make([]storage.Beneficiary, 0, len(idx))
	collect := func(query string, args ...any) error {
		rows, err := s.db.QueryContext(ctx, s.rebind(query), args...)
		if err != nil {
			return s.mapErr(err)
		}
		defer rows.Close()
		part := make([]storage.Beneficiary, 0, 256)
		for rows.Next() {
			var bi []byte
			b, err := scanBeneficiary(rows, &bi)
			if err != nil {
				return s.mapErr(err)
			}
			b.SSN = byIndex[string(bi)]
			part = append(part, b)
		}
		if err := rows.Err(); err != nil {
			return s.mapErr(err)
		}
		mu.Lock()
		out = append(out, part...)
		mu.Unlock()
		return nil
	}
	if s.dialect == postgres {
		// Large batches are split into pgChunk-sized `= ANY` queries run on up
		// to pgParallel pooled connections: the index probes are latency-bound
		// (random heap pages), so overlapping them raises one caller's rate.
		var wg sync.WaitGroup
		errs := make(chan error, (len(idx)+pgChunk-1)/pgChunk)
		sem := make(chan struct{}, pgParallel)
		for start := 0; start < len(idx); start += pgChunk {
			chunk := idx[start:min(start+pgChunk, len(idx))]
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := collect(`SELECT `+benCols+`, ssn_index FROM beneficiaries WHERE agency_id = ? AND ssn_index = ANY(?)`, agencyID, chunk); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return nil, fmt.Errorf("sql: batch status: %w", err)
		}
		return out, nil
	}
	for start := 0; start < len(idx); start += sqliteBatch {
		chunk := idx[start:min(start+sqliteBatch, len(idx))]
		args := make([]any, 0, len(chunk)+1)
		args = append(args, agencyID)
		for _, bi := range chunk {
			args = append(args, bi)
		}
		ph := strings.Repeat("?, ", len(chunk))
		query := `SELECT ` + benCols + `, ssn_index FROM beneficiaries WHERE agency_id = ? AND ssn_index IN (` + ph[:len(ph)-2] + `)`
		if err := collect(query, args...); err != nil {
			return nil, fmt.Errorf("sql: batch status: %w", err)
		}
	}
	return out, nil
}

func clampLimit(limit int) int {
	if limit <= 0 || limit > 10000 {
		return 10000
	}
	return limit
}

// BeneficiariesValidUntil implements storage.Entitlements.
func (s *Store) BeneficiariesValidUntil(ctx context.Context, agencyID string, from, to time.Time, afterID string, limit int) ([]storage.Beneficiary, error) {
	// Keyset paging over (valid_until, id): resume after the row afterID.
	after := int64(-1)
	if afterID != "" {
		b, err := s.Beneficiary(ctx, agencyID, afterID)
		if err != nil {
			return nil, err
		}
		after = micros(b.ValidUntil)
	}
	return s.q.beneficiaries(ctx, `SELECT `+benCols+` FROM beneficiaries
		WHERE agency_id = ? AND valid_until >= ? AND valid_until < ? AND status <> 'terminated'
		AND (valid_until > ? OR (valid_until = ? AND id > ?))
		ORDER BY valid_until, id LIMIT ?`,
		agencyID, micros(from), micros(to), after, after, afterID, clampLimit(limit))
}

// BeneficiariesToSweep implements storage.Entitlements.
func (s *Store) BeneficiariesToSweep(ctx context.Context, now time.Time, limit int) ([]storage.Beneficiary, error) {
	n := micros(now)
	return s.q.beneficiaries(ctx, `SELECT `+benCols+` FROM beneficiaries WHERE id IN (
		SELECT id FROM beneficiaries WHERE status = 'certified' AND due_from <= ?
		UNION SELECT id FROM beneficiaries WHERE status IN ('certified', 'due') AND valid_until <= ?)
		ORDER BY id LIMIT ?`, n, n, clampLimit(limit))
}

// EntitlementEvents implements storage.Entitlements.
func (s *Store) EntitlementEvents(ctx context.Context, agencyID string, afterSeq int64, limit int) ([]storage.EntitlementEvent, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT seq, agency_id, beneficiary_id, type, payload, at FROM entitlement_events
		WHERE agency_id = ? AND seq > ? ORDER BY seq LIMIT ?`), agencyID, afterSeq, clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("sql: entitlement events: %w", s.mapErr(err))
	}
	defer rows.Close()
	out := []storage.EntitlementEvent{}
	for rows.Next() {
		var e storage.EntitlementEvent
		var payload string
		var at int64
		if err := rows.Scan(&e.Seq, &e.AgencyID, &e.BeneficiaryID, &e.Type, &payload, &at); err != nil {
			return nil, s.mapErr(err)
		}
		e.Payload, e.At = json.RawMessage(payload), fromMicros(at)
		out = append(out, e)
	}
	return out, s.mapErr(rows.Err())
}

// ClaimWebhookTargets implements storage.Entitlements. The outer WHERE
// re-checks the lease, so two dispatchers racing for one agency cannot both
// win (PostgreSQL re-evaluates it on the locked row; SQLite serialises writers).
func (s *Store) ClaimWebhookTargets(ctx context.Context, owner string, lease time.Duration, limit int) ([]storage.WebhookTarget, error) {
	if owner == "" || lease <= 0 {
		return nil, fmt.Errorf("sql: claim webhook targets: %w", storage.ErrInvalidArgument)
	}
	now := s.now().UTC().UnixMicro()
	rows, err := s.db.QueryContext(ctx, s.rebind(`UPDATE webhook_state SET lease_owner = ?, lease_until = ?
		WHERE agency_id IN (SELECT w.agency_id FROM webhook_state w
			WHERE w.next_at <= ? AND w.lease_until <= ?
			AND EXISTS (SELECT 1 FROM entitlement_events e WHERE e.agency_id = w.agency_id AND e.seq > w.cursor_seq)
			ORDER BY w.agency_id LIMIT ?)
		AND lease_until <= ?
		RETURNING agency_id, cursor_seq, attempts`),
		owner, now+lease.Microseconds(), now, now, clampLimit(limit), now)
	if err != nil {
		return nil, fmt.Errorf("sql: claim webhook targets: %w", s.mapErr(err))
	}
	defer rows.Close()
	out := []storage.WebhookTarget{}
	for rows.Next() {
		var t storage.WebhookTarget
		if err := rows.Scan(&t.AgencyID, &t.Cursor, &t.Attempts); err != nil {
			return nil, s.mapErr(err)
		}
		out = append(out, t)
	}
	return out, s.mapErr(rows.Err())
}

// AckWebhook implements storage.Entitlements.
func (s *Store) AckWebhook(ctx context.Context, agencyID, owner string, seq int64) error {
	err := s.q.execOne(ctx, `UPDATE webhook_state SET cursor_seq = CASE WHEN ? > cursor_seq THEN ? ELSE cursor_seq END,
		attempts = 0, last_error = '' WHERE agency_id = ? AND lease_owner = ?`, seq, seq, agencyID, owner)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("sql: ack webhook: %w", storage.ErrWebhookLeaseLost)
	}
	return err
}

// FailWebhook implements storage.Entitlements.
func (s *Store) FailWebhook(ctx context.Context, agencyID, owner string, seq int64, errText string, retryAt time.Time, maxAttempts int) (bool, error) {
	if len(errText) > 200 {
		errText = errText[:200]
	}
	dead := false
	err := s.Tx(ctx, func(tx storage.RegistryTx) error {
		t := tx.(*q)
		var attempts int
		err := t.queryRow(ctx, `SELECT attempts FROM webhook_state WHERE agency_id = ? AND lease_owner = ?`, agencyID, owner).Scan(&attempts)
		if errors.Is(err, dbsql.ErrNoRows) {
			return fmt.Errorf("sql: fail webhook: %w", storage.ErrWebhookLeaseLost)
		}
		if err != nil {
			return s.mapErr(err)
		}
		attempts++
		if attempts < maxAttempts {
			_, err := t.exec(ctx, `UPDATE webhook_state SET attempts = ?, next_at = ?, last_error = ?, lease_owner = '', lease_until = 0
				WHERE agency_id = ?`, attempts, micros(retryAt), errText, agencyID)
			return err
		}
		dead = true
		if _, err := t.exec(ctx, `INSERT INTO webhook_dead_letters (agency_id, seq, attempts, last_error, at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (agency_id, seq) DO UPDATE SET attempts = excluded.attempts, last_error = excluded.last_error, at = excluded.at`,
			agencyID, seq, attempts, errText, t.nowMicros()); err != nil {
			return err
		}
		_, err = t.exec(ctx, `UPDATE webhook_state SET cursor_seq = CASE WHEN ? > cursor_seq THEN ? ELSE cursor_seq END,
			attempts = 0, next_at = 0, last_error = ?, lease_owner = '', lease_until = 0 WHERE agency_id = ?`, seq, seq, errText, agencyID)
		return err
	})
	return dead, err
}

// ReleaseWebhook implements storage.Entitlements.
func (s *Store) ReleaseWebhook(ctx context.Context, agencyID, owner string, retryAt time.Time) error {
	err := s.q.execOne(ctx, `UPDATE webhook_state SET next_at = ?, lease_owner = '', lease_until = 0 WHERE agency_id = ? AND lease_owner = ?`,
		micros(retryAt), agencyID, owner)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("sql: release webhook: %w", storage.ErrWebhookLeaseLost)
	}
	return err
}

// WebhookDeadLetters implements storage.Entitlements.
func (s *Store) WebhookDeadLetters(ctx context.Context, agencyID string, afterSeq int64, limit int) ([]storage.WebhookDeadLetter, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT agency_id, seq, attempts, last_error, at FROM webhook_dead_letters
		WHERE agency_id = ? AND seq > ? ORDER BY seq LIMIT ?`), agencyID, afterSeq, clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("sql: dead letters: %w", s.mapErr(err))
	}
	defer rows.Close()
	out := []storage.WebhookDeadLetter{}
	for rows.Next() {
		var d storage.WebhookDeadLetter
		var at int64
		if err := rows.Scan(&d.AgencyID, &d.Seq, &d.Attempts, &d.LastError, &at); err != nil {
			return nil, s.mapErr(err)
		}
		d.At = fromMicros(at)
		out = append(out, d)
	}
	return out, s.mapErr(rows.Err())
}

// RedeliverWebhooks implements storage.Entitlements. It also drops any lease,
// so a dispatcher mid-delivery gets ErrWebhookLeaseLost instead of moving the
// cursor forward again.
func (s *Store) RedeliverWebhooks(ctx context.Context, agencyID string, fromSeq int64) error {
	if fromSeq < 1 {
		fromSeq = 1
	}
	return s.Tx(ctx, func(tx storage.RegistryTx) error {
		t := tx.(*q)
		if _, err := t.exec(ctx, `INSERT INTO webhook_state (agency_id) VALUES (?) ON CONFLICT (agency_id) DO NOTHING`, agencyID); err != nil {
			return err
		}
		if _, err := t.exec(ctx, `UPDATE webhook_state SET cursor_seq = CASE WHEN cursor_seq > ? THEN ? ELSE cursor_seq END,
			attempts = 0, next_at = 0, lease_owner = '', lease_until = 0 WHERE agency_id = ?`, fromSeq-1, fromSeq-1, agencyID); err != nil {
			return err
		}
		_, err := t.exec(ctx, `DELETE FROM webhook_dead_letters WHERE agency_id = ? AND seq >= ?`, agencyID, fromSeq)
		return err
	})
}
