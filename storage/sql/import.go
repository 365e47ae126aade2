package sql

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/essc-project/essc/storage"
)

// Import batch sizes: one transaction per batch. PostgreSQL batches are large
// (COPY is cheap per row); SQLite is bounded by the statement-parameter limit
// of the multi-row INSERT into the staging table.
const (
	pgImportBatch     = 20000
	sqliteImportBatch = 5000
	sqliteRowsPerStmt = 500
)

// stageRow is one import row prepared in Go: encrypted SSN and blind index.
type stageRow struct {
	line      int
	holderID  string
	name      string
	ssnIndex  []byte
	ssnEnc    []byte
	ssnMasked string
	cardID    string
	number    string
	region    string
	issuedOn  int64
	verifier  []byte
}

var stageCols = []string{"line", "holder_id", "name", "ssn_index", "ssn_enc", "ssn_masked", "card_id", "number", "region", "issued_on", "pin_verifier"}

func (r stageRow) values() []any {
	return []any{r.line, r.holderID, r.name, r.ssnIndex, r.ssnEnc, r.ssnMasked, r.cardID, r.number, r.region, r.issuedOn, r.verifier}
}

// ImportCards implements storage.Registry. Each batch is one transaction:
// rows are staged (COPY on PostgreSQL, multi-row INSERT on SQLite) into a
// temporary table, then
//
//	INSERT INTO holders SELECT … FROM stage ON CONFLICT DO NOTHING
//	INSERT INTO cards SELECT … FROM stage JOIN holders ON ssn_index ON CONFLICT DO NOTHING RETURNING line
//
// so an existing SSN reuses its holder and an existing card number is skipped:
// re-running a file is idempotent and a crashed run resumes by running again.
func (s *Store) ImportCards(ctx context.Context, rows []storage.CardImport) (storage.ImportResult, error) {
	res := storage.ImportResult{Skipped: []int{}}
	batch := sqliteImportBatch
	if s.dialect == postgres {
		batch = pgImportBatch
	}
	for start := 0; start < len(rows); start += batch {
		end := min(start+batch, len(rows))
		staged, err := s.stage(rows[start:end])
		if err != nil {
			return res, err
		}
		var br storage.ImportResult
		if s.dialect == postgres {
			br, err = s.importBatchPG(ctx, staged)
		} else {
			br, err = s.importBatchSQLite(ctx, staged)
		}
		if err != nil {
			return res, fmt.Errorf("sql: import rows %d..%d: %w", start, end-1, err)
		}
		res.Inserted += br.Inserted
		res.HoldersCreated += br.HoldersCreated
		res.Skipped = append(res.Skipped, br.Skipped...)
	}
	return res, nil
}

func (s *Store) stage(rows []storage.CardImport) ([]stageRow, error) {
	out := make([]stageRow, len(rows))
	for i, row := range rows {
		if row.SSN == "" || row.Number == "" {
			return nil, fmt.Errorf("sql: import line %d without SSN or card number: %w", row.Line, storage.ErrInvalidRecord)
		}
		hid := newID()
		enc, err := s.encryptSSN(hid, row.SSN)
		if err != nil {
			return nil, err
		}
		cid := row.CardID
		if cid == "" {
			cid = newID()
		}
		out[i] = stageRow{line: row.Line, holderID: hid, name: row.Name, ssnIndex: s.blindIndex(row.SSN), ssnEnc: enc,
			ssnMasked: maskSSN(row.SSN), cardID: cid, number: row.Number, region: row.Region, issuedOn: micros(row.IssuedOn),
			verifier: row.PINVerifier}
	}
	return out, nil
}

// The two statements that move staged rows into the registry; identical on
// both engines (WHERE true disambiguates ON CONFLICT after SELECT in SQLite).
const (
	importHolders = `INSERT INTO holders (id, name, ssn_index, ssn_enc, ssn_masked, created_at)
		SELECT holder_id, name, ssn_index, ssn_enc, ssn_masked, ? FROM essc_import_stage WHERE true
		ON CONFLICT DO NOTHING`
	importCards = `INSERT INTO cards (id, holder_id, number, region, issued_on, status, cancel_reason, pin_verifier,
		pin_must_change, pin_failures, pin_locked, pin_changed_at, version, created_at, updated_at)
		SELECT s.card_id, h.id, s.number, s.region, s.issued_on, 'active', '', s.pin_verifier, 1, 0, 0, 0, 1, ?, ?
		FROM essc_import_stage s JOIN holders h ON h.ssn_index = s.ssn_index WHERE true
		ON CONFLICT DO NOTHING RETURNING number`
)

// skipped lists the lines of staged rows whose card number was not inserted.
func skipped(staged []stageRow, inserted map[string]bool) []int {
	out := []int{}
	for _, r := range staged {
		if inserted[r.number] {
			delete(inserted, r.number) // a duplicate of the same number later in the batch is skipped
			continue
		}
		out = append(out, r.line)
	}
	return out
}

func (s *Store) importBatchPG(ctx context.Context, staged []stageRow) (storage.ImportResult, error) {
	var res storage.ImportResult
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return res, s.mapErr(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		tx, err := pc.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE essc_import_stage (line BIGINT, holder_id TEXT, name TEXT, ssn_index BYTEA,
			ssn_enc BYTEA, ssn_masked TEXT, card_id TEXT, number TEXT, region TEXT, issued_on BIGINT, pin_verifier BYTEA) ON COMMIT DROP`); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"essc_import_stage"}, stageCols, pgx.CopyFromSlice(len(staged), func(i int) ([]any, error) {
			return staged[i].values(), nil
		})); err != nil {
			return err
		}
		now := s.now().UTC().UnixMicro()
		tag, err := tx.Exec(ctx, s.rebind(importHolders), now)
		if err != nil {
			return err
		}
		res.HoldersCreated = int(tag.RowsAffected())
		rows, err := tx.Query(ctx, s.rebind(importCards), now, now)
		if err != nil {
			return err
		}
		inserted := make(map[string]bool, len(staged))
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return err
			}
			inserted[n] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		res.Inserted = len(inserted)
		res.Skipped = skipped(staged, inserted)
		return tx.Commit(ctx)
	})
	return res, s.mapErr(err)
}

func (s *Store) importBatchSQLite(ctx context.Context, staged []stageRow) (storage.ImportResult, error) {
	var res storage.ImportResult
	if err := s.writes.enter(ctx); err != nil {
		return res, err
	}
	defer s.writes.leave()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return res, s.mapErr(err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return res, s.mapErr(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE IF NOT EXISTS essc_import_stage (line INTEGER, holder_id TEXT, name TEXT,
		ssn_index BLOB, ssn_enc BLOB, ssn_masked TEXT, card_id TEXT, number TEXT, region TEXT, issued_on INTEGER, pin_verifier BLOB)`); err != nil {
		return res, s.mapErr(err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM essc_import_stage`); err != nil {
		return res, s.mapErr(err)
	}
	rowPH := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(stageCols)), ", ") + ")"
	for start := 0; start < len(staged); start += sqliteRowsPerStmt {
		end := min(start+sqliteRowsPerStmt, len(staged))
		var b strings.Builder
		b.WriteString(`INSERT INTO essc_import_stage (` + strings.Join(stageCols, ", ") + `) VALUES `)
		args := make([]any, 0, (end-start)*len(stageCols))
		for i := start; i < end; i++ {
			if i > start {
				b.WriteString(", ")
			}
			b.WriteString(rowPH)
			args = append(args, staged[i].values()...)
		}
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			return res, s.mapErr(err)
		}
	}
	now := s.now().UTC().UnixMicro()
	hr, err := tx.ExecContext(ctx, importHolders, now)
	if err != nil {
		return res, s.mapErr(err)
	}
	n, _ := hr.RowsAffected()
	res.HoldersCreated = int(n)
	rows, err := tx.QueryContext(ctx, importCards, now, now)
	if err != nil {
		return res, s.mapErr(err)
	}
	inserted := make(map[string]bool, len(staged))
	for rows.Next() {
		var num string
		if err := rows.Scan(&num); err != nil {
			rows.Close()
			return res, s.mapErr(err)
		}
		inserted[num] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, s.mapErr(err)
	}
	res.Inserted = len(inserted)
	res.Skipped = skipped(staged, inserted)
	if _, err := tx.ExecContext(ctx, `DELETE FROM essc_import_stage`); err != nil {
		return res, s.mapErr(err)
	}
	return res, s.mapErr(tx.Commit())
}
