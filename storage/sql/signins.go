package sql

import (
	"context"
	"errors"
	"fmt"
	"time"

	dbsql "database/sql"

	"github.com/essc-project/essc/storage"
)

var _ storage.SignIns = (*Store)(nil)

// AddSignIn implements storage.SignIns: the record is committed before
// AddSignIn returns, in a group with concurrent logins' (newSignInBatcher);
// expired rows are removed by PurgeExpiredSignIns, not here.
func (s *Store) AddSignIn(ctx context.Context, si storage.SignIn) error {
	if si.SID == "" || si.HolderID == "" || si.ExpiresAt.IsZero() {
		return fmt.Errorf("sql: sign-in without sid, holder or expiry: %w", storage.ErrInvalidRecord)
	}
	_, err := s.signIns.submit(ctx, si)
	return err
}

// newSignInBatcher group-commits sign-in records (one per login): a group's
// rows go in multi-row INSERTs, each atomic on its own; when one fails, its
// rows are inserted one by one, so a bad row fails only its own caller.
func newSignInBatcher(s *Store) *committer[storage.SignIn] {
	return newCommitter("add sign-in", func(group []*groupReq[storage.SignIn]) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.writes.enter(ctx); err != nil {
			for _, r := range group {
				r.err = err
			}
			return
		}
		defer s.writes.leave()
		for len(group) > 0 {
			chunk := group[:min(len(group), rowsPerInsert)]
			group = group[len(chunk):]
			err := s.q.insertSignIns(ctx, chunk)
			if err != nil && len(chunk) > 1 {
				for _, r := range chunk {
					r.err = s.q.insertSignIns(ctx, []*groupReq[storage.SignIn]{r})
				}
				continue
			}
			for _, r := range chunk {
				r.err = err
			}
		}
	})
}

var signInInsert = multiRowInsert(`INSERT INTO sign_ins (sid, holder_id, client_id, profile, subject, request_id, acr, browser, at, expires_at) VALUES `, 10)

// insertSignIns inserts up to rowsPerInsert sign-ins in one statement.
func (r *q) insertSignIns(ctx context.Context, rows []*groupReq[storage.SignIn]) error {
	args := make([]any, 0, 10*len(rows))
	for _, row := range rows {
		si := row.v
		args = append(args, si.SID, si.HolderID, si.ClientID, si.Profile, si.Subject, si.RequestID, si.ACR, si.Browser, micros(si.At), micros(si.ExpiresAt))
	}
	_, err := r.exec(ctx, signInInsert[len(rows)-1], args...)
	return err
}

// purgeBatch bounds one purge statement, so a large backlog never holds
// the registry's write lock for long.
const purgeBatch = 1000

// PurgeExpiredSignIns implements storage.SignIns.
func (s *Store) PurgeExpiredSignIns(ctx context.Context) (int64, error) {
	var total int64
	for {
		res, err := s.q.gatedExec(ctx, `DELETE FROM sign_ins WHERE sid IN (SELECT sid FROM sign_ins WHERE expires_at <= ? LIMIT ?)`,
			s.q.nowMicros(), purgeBatch)
		if err != nil {
			return total, fmt.Errorf("sql: purge sign-ins: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("sql: purge sign-ins: %w", s.mapErr(err))
		}
		total += n
		if n < purgeBatch {
			return total, nil
		}
	}
}

const signInCols = `sid, holder_id, client_id, profile, subject, request_id, acr, browser, at, expires_at`

func scanSignIn(sc interface{ Scan(...any) error }) (storage.SignIn, error) {
	var si storage.SignIn
	var at, exp int64
	err := sc.Scan(&si.SID, &si.HolderID, &si.ClientID, &si.Profile, &si.Subject, &si.RequestID, &si.ACR, &si.Browser, &at, &exp)
	si.At, si.ExpiresAt = fromMicros(at), fromMicros(exp)
	return si, err
}

// SignInsOf implements storage.SignIns.
func (s *Store) SignInsOf(ctx context.Context, holderID string) ([]storage.SignIn, error) {
	rows, err := s.q.db.QueryContext(ctx, s.rebind(`SELECT `+signInCols+` FROM sign_ins
		WHERE holder_id = ? AND expires_at > ? ORDER BY at DESC LIMIT 100`), holderID, s.q.nowMicros())
	if err != nil {
		return nil, s.mapErr(err)
	}
	defer rows.Close()
	out := []storage.SignIn{}
	for rows.Next() {
		si, err := scanSignIn(rows)
		if err != nil {
			return nil, s.mapErr(err)
		}
		out = append(out, si)
	}
	return out, s.mapErr(rows.Err())
}

// SignIn implements storage.SignIns.
func (s *Store) SignIn(ctx context.Context, sid string) (storage.SignIn, error) {
	si, err := scanSignIn(s.q.db.QueryRowContext(ctx, s.rebind(`SELECT `+signInCols+` FROM sign_ins WHERE sid = ? AND expires_at > ?`),
		sid, s.q.nowMicros()))
	if errors.Is(err, dbsql.ErrNoRows) {
		return storage.SignIn{}, fmt.Errorf("sql: sign-in: %w", storage.ErrNotFound)
	}
	return si, s.mapErr(err)
}

// DropSignIn implements storage.SignIns.
func (s *Store) DropSignIn(ctx context.Context, sid string) error {
	_, err := s.q.gatedExec(ctx, `DELETE FROM sign_ins WHERE sid = ?`, sid)
	return err
}
