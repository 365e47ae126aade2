package sql

import (
	"context"
	dbsql "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/essc-project/essc/storage"
)

// inTx runs fn in r's transaction, or in a new one when r is the pool, so
// multi-statement primitives (outbox, audit) are never split across commits.
func (r *q) inTx(ctx context.Context, fn func(*q) error) error {
	if r.inTransaction() {
		return fn(r)
	}
	return r.s.Tx(ctx, func(tx storage.RegistryTx) error { return fn(tx.(*q)) })
}

// AppendEvent implements storage.RegistryTx. The counter row is locked until
// commit, so Seqs become visible in increasing order.
func (r *q) AppendEvent(ctx context.Context, e storage.Event) (storage.Event, error) {
	if e.Type == "" {
		return e, fmt.Errorf("sql: event without type: %w", storage.ErrInvalidRecord)
	}
	if len(e.Payload) == 0 {
		e.Payload = json.RawMessage(`{}`)
	}
	if !json.Valid(e.Payload) {
		return e, fmt.Errorf("sql: event payload is not JSON: %w", storage.ErrInvalidRecord)
	}
	err := r.inTx(ctx, func(t *q) error {
		if err := t.queryRow(ctx, `UPDATE counters SET value = value + 1 WHERE name = 'outbox' RETURNING value`).Scan(&e.Seq); err != nil {
			return t.s.mapErr(err)
		}
		e.At = fromMicros(t.nowMicros())
		_, err := t.exec(ctx, `INSERT INTO outbox (seq, type, aggregate, payload, at) VALUES (?, ?, ?, ?, ?)`,
			e.Seq, e.Type, e.Aggregate, string(e.Payload), micros(e.At))
		return err
	})
	if err != nil {
		return storage.Event{}, fmt.Errorf("sql: append event: %w", err)
	}
	return e, nil
}

// Events implements storage.OutboxReader.
func (r *q) Events(ctx context.Context, afterSeq int64, limit int) ([]storage.Event, error) {
	if limit <= 0 || limit > 10000 {
		limit = 10000
	}
	rows, err := r.db.QueryContext(ctx, r.s.rebind(`SELECT seq, type, aggregate, payload, at FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?`), afterSeq, limit)
	if err != nil {
		return nil, r.s.mapErr(err)
	}
	defer rows.Close()
	out := []storage.Event{}
	for rows.Next() {
		var e storage.Event
		var payload string
		var at int64
		if err := rows.Scan(&e.Seq, &e.Type, &e.Aggregate, &payload, &at); err != nil {
			return nil, r.s.mapErr(err)
		}
		e.Payload, e.At = json.RawMessage(payload), fromMicros(at)
		out = append(out, e)
	}
	return out, r.s.mapErr(rows.Err())
}

// Cursor implements storage.OutboxReader.
func (r *q) Cursor(ctx context.Context, consumer string) (int64, error) {
	var seq int64
	err := r.queryRow(ctx, `SELECT seq FROM outbox_cursors WHERE consumer = ?`, consumer).Scan(&seq)
	if errors.Is(err, dbsql.ErrNoRows) {
		return 0, nil
	}
	return seq, r.s.mapErr(err)
}

// AdvanceCursor implements storage.OutboxReader and storage.RegistryTx.
func (r *q) AdvanceCursor(ctx context.Context, consumer string, seq int64) error {
	if consumer == "" {
		return fmt.Errorf("sql: cursor without consumer name: %w", storage.ErrInvalidRecord)
	}
	_, err := r.gatedExec(ctx, `INSERT INTO outbox_cursors (consumer, seq) VALUES (?, ?)
		ON CONFLICT (consumer) DO UPDATE SET seq = CASE WHEN excluded.seq > outbox_cursors.seq THEN excluded.seq ELSE outbox_cursors.seq END`,
		consumer, seq)
	return err
}

// AppendAudit implements storage.RegistryTx (and, on the Store, runs in its
// own transaction). The head row is locked by the first UPDATE until commit,
// so concurrent appends queue instead of forking the chain.
func (r *q) AppendAudit(ctx context.Context, e storage.AuditEntry) (storage.AuditEntry, error) {
	if e.Action == "" {
		return e, fmt.Errorf("sql: audit entry without action: %w", storage.ErrInvalidRecord)
	}
	if len(e.Details) > 0 && !json.Valid(e.Details) {
		return e, fmt.Errorf("sql: audit details are not JSON: %w", storage.ErrInvalidRecord)
	}
	if e.Details == nil {
		e.Details = json.RawMessage{}
	}
	if e.At.IsZero() {
		e.At = r.s.now()
	}
	e.At = fromMicros(micros(e.At))
	if !r.inTransaction() {
		return r.s.audit.submit(ctx, e) // group commit with concurrent appends
	}
	if err := r.queryRow(ctx, `UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, chain`).Scan(&e.Seq, &e.Prev); err != nil {
		return storage.AuditEntry{}, fmt.Errorf("sql: append audit: %w", r.s.mapErr(err))
	}
	e.Chain = storage.AuditChain(r.s.secrets.AuditKey, e.Prev, e)
	if err := r.insertAudit(ctx, e); err != nil {
		return storage.AuditEntry{}, fmt.Errorf("sql: append audit: %w", err)
	}
	r.audit = auditHead{seq: e.Seq, chain: e.Chain}
	return e, nil
}

// insertAudit inserts entries (numbered and chained after the head that
// this transaction moved their seq past) with multi-row INSERTs of at most
// rowsPerInsert rows, and sets the head's chain to the last one's. On
// PostgreSQL the last INSERT carries that UPDATE (one statement fewer per
// append); on SQLite it is a statement of its own.
func (r *q) insertAudit(ctx context.Context, entries ...storage.AuditEntry) error {
	head := entries[len(entries)-1].Chain
	for len(entries) > 0 {
		n := min(len(entries), rowsPerInsert)
		last := n == len(entries)
		args := make([]any, 0, 1+9*n)
		query := auditInsert[n-1]
		if last && r.s.dialect == postgres {
			query, args = auditInsertMovingHead[n-1], append(args, head)
		}
		for _, e := range entries[:n] {
			args = append(args, e.Seq, micros(e.At), e.Actor, e.Act, e.Action, e.Target, []byte(e.Details), e.Prev, e.Chain)
		}
		if _, err := r.exec(ctx, query, args...); err != nil {
			return err
		}
		entries = entries[n:]
	}
	if r.s.dialect == postgres {
		return nil
	}
	_, err := r.exec(ctx, `UPDATE audit_head SET chain = ? WHERE id = 1`, head)
	return err
}

var (
	auditInsert = multiRowInsert(`INSERT INTO audit_log (seq, at, actor, act, action, target, details, prev, chain) VALUES `, 9)
	// auditInsertMovingHead[i] is auditInsert[i] that also sets the head's
	// chain (its first argument): PostgreSQL runs a data-modifying WITH once
	// whether or not the statement reads it.
	auditInsertMovingHead = multiRowInsert(`WITH head AS (UPDATE audit_head SET chain = ? WHERE id = 1) `+
		`INSERT INTO audit_log (seq, at, actor, act, action, target, details, prev, chain) VALUES `, 9)
)

// rowsPerInsert bounds the rows of one multi-row INSERT, so the statement
// texts (and prepared statements) stay few.
const rowsPerInsert = 16

// multiRowInsert returns the statements inserting 1 … rowsPerInsert rows of
// cols columns: [i] inserts i+1 rows.
func multiRowInsert(prefix string, cols int) (qs [rowsPerInsert]string) {
	row := "(?" + strings.Repeat(", ?", cols-1) + ")"
	q := prefix + row
	for i := range qs {
		qs[i] = q
		q += ", " + row
	}
	return qs
}

const auditCols = `seq, at, actor, act, action, target, details, prev, chain`

func scanAudit(row interface{ Scan(...any) error }) (storage.AuditEntry, error) {
	var e storage.AuditEntry
	var at int64
	var details []byte
	if err := row.Scan(&e.Seq, &at, &e.Actor, &e.Act, &e.Action, &e.Target, &details, &e.Prev, &e.Chain); err != nil {
		return e, err
	}
	e.At, e.Details = fromMicros(at), json.RawMessage(details)
	return e, nil
}

// AuditEntries implements storage.Registry.
func (s *Store) AuditEntries(ctx context.Context, afterSeq int64, limit int) ([]storage.AuditEntry, error) {
	if limit <= 0 || limit > 10000 {
		limit = 10000
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT `+auditCols+` FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?`), afterSeq, limit)
	if err != nil {
		return nil, s.mapErr(err)
	}
	defer rows.Close()
	out := []storage.AuditEntry{}
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, s.mapErr(err)
		}
		out = append(out, e)
	}
	return out, s.mapErr(rows.Err())
}

func (s *Store) auditHead(ctx context.Context) (int64, []byte, error) {
	var seq int64
	var chain []byte
	err := s.db.QueryRowContext(ctx, `SELECT seq, chain FROM audit_head WHERE id = 1`).Scan(&seq, &chain)
	return seq, chain, s.mapErr(err)
}

// VerifyAudit implements storage.Registry. It streams the log in Seq order
// (so its memory use does not grow with the log) and tolerates entries
// appended while it runs: every entry present when it started must verify, and
// the log must end at a head value recorded before or after the scan.
func (s *Store) VerifyAudit(ctx context.Context) (storage.AuditReport, error) {
	h1Seq, h1Chain, err := s.auditHead(ctx)
	if err != nil {
		return storage.AuditReport{}, err
	}
	v := storage.NewAuditVerifier(s.secrets.AuditKey)
	rows, err := s.db.QueryContext(ctx, `SELECT `+auditCols+` FROM audit_log ORDER BY seq`)
	if err != nil {
		return storage.AuditReport{}, s.mapErr(err)
	}
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			rows.Close()
			return storage.AuditReport{}, s.mapErr(err)
		}
		if !v.Add(e) {
			break
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return storage.AuditReport{}, s.mapErr(err)
	}
	if v.Broken() {
		return v.Finish(0, nil), nil
	}
	h2Seq, h2Chain, err := s.auditHead(ctx)
	if err != nil {
		return storage.AuditReport{}, err
	}
	last, _ := v.Last()
	switch {
	case last == h1Seq:
		return v.Finish(h1Seq, h1Chain), nil
	case last > h1Seq && last < h2Seq:
		// Appends landed during the scan; everything present at the start verified.
		l, c := v.Last()
		return v.Finish(l, c), nil
	default:
		return v.Finish(h2Seq, h2Chain), nil
	}
}

// AppendAudit implements storage.Registry in its own transaction.
func (s *Store) AppendAudit(ctx context.Context, e storage.AuditEntry) (storage.AuditEntry, error) {
	return s.q.AppendAudit(ctx, e)
}
