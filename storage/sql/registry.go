package sql

import (
	"context"
	"crypto/rand"
	dbsql "database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/essc-project/essc/storage"
)

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (dbsql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*dbsql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *dbsql.Row
}

// q implements the registry primitives over either the pool (Store, outside a
// transaction) or one transaction (Tx).
type q struct {
	s  *Store
	db querier
	// audit is the head this transaction's last AppendAudit left (seq 0:
	// none); Store.Tx hands it to the audit committer after the commit.
	audit auditHead
}

var (
	_ storage.RegistryTx     = (*q)(nil)
	_ storage.RegistryReader = (*q)(nil)
)

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b[:])
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UTC().UnixMicro()
}

func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func jsonList(v []string) string {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func parseList(s string) ([]string, error) {
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("sql: stored list malformed: %w", storage.ErrInvalidRecord)
	}
	return v, nil
}

func (r *q) nowMicros() int64 { return r.s.now().UTC().UnixMicro() }

func (r *q) exec(ctx context.Context, query string, args ...any) (dbsql.Result, error) {
	res, err := r.db.ExecContext(ctx, r.s.rebind(query), args...)
	return res, r.s.mapErr(err)
}

// execOne runs an UPDATE that must touch exactly one row; ErrNotFound otherwise.
func (r *q) execOne(ctx context.Context, query string, args ...any) error {
	res, err := r.exec(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return r.s.mapErr(err)
	}
	if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}

func (r *q) queryRow(ctx context.Context, query string, args ...any) *dbsql.Row {
	return r.db.QueryRowContext(ctx, r.s.rebind(query), args...)
}

// ---- holders ----

const holderCols = `id, name, ssn_enc, ssn_masked, created_at`

func (r *q) scanHolder(row interface{ Scan(...any) error }) (storage.Holder, error) {
	var h storage.Holder
	var enc []byte
	var created int64
	if err := row.Scan(&h.ID, &h.Name, &enc, &h.SSNMasked, &created); err != nil {
		return h, r.s.mapErr(err)
	}
	ssn, err := r.s.decryptSSN(h.ID, enc)
	if err != nil {
		return storage.Holder{}, err
	}
	h.SSN, h.CreatedAt = ssn, fromMicros(created)
	return h, nil
}

// CreateHolder implements storage.RegistryTx.
func (r *q) CreateHolder(ctx context.Context, h storage.Holder) (storage.Holder, error) {
	if h.SSN == "" {
		return h, fmt.Errorf("sql: holder without SSN: %w", storage.ErrInvalidRecord)
	}
	if h.ID == "" {
		h.ID = newID()
	}
	h.SSN = normalizeSSN(h.SSN)
	if h.SSNMasked == "" {
		h.SSNMasked = maskSSN(h.SSN)
	}
	if h.CreatedAt.IsZero() {
		h.CreatedAt = r.s.now().UTC()
	}
	h.CreatedAt = fromMicros(micros(h.CreatedAt))
	enc, err := r.s.encryptSSN(h.ID, h.SSN)
	if err != nil {
		return h, err
	}
	_, err = r.exec(ctx, `INSERT INTO holders (id, name, ssn_index, ssn_enc, ssn_masked, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		h.ID, h.Name, r.s.blindIndex(h.SSN), enc, h.SSNMasked, micros(h.CreatedAt))
	if err != nil {
		return h, fmt.Errorf("sql: create holder: %w", err)
	}
	return h, nil
}

// UpdateHolderName implements storage.RegistryTx.
func (r *q) UpdateHolderName(ctx context.Context, id, name string) error {
	return r.execOne(ctx, `UPDATE holders SET name = ? WHERE id = ?`, name, id)
}

// Holder implements storage.RegistryReader.
func (r *q) Holder(ctx context.Context, id string) (storage.Holder, error) {
	return r.scanHolder(r.queryRow(ctx, `SELECT `+holderCols+` FROM holders WHERE id = ?`, id))
}

// HolderBySSN implements storage.RegistryReader.
func (r *q) HolderBySSN(ctx context.Context, ssn string) (storage.Holder, error) {
	return r.scanHolder(r.queryRow(ctx, `SELECT `+holderCols+` FROM holders WHERE ssn_index = ?`, r.s.blindIndex(ssn)))
}

// ---- cards ----

const cardCols = `id, holder_id, number, region, issued_on, status, cancel_reason, pin_verifier, pin_must_change,
	pin_failures, pin_locked, pin_changed_at, version, created_at, updated_at`

func scanCard(row interface{ Scan(...any) error }) (storage.Card, error) {
	var c storage.Card
	dest, finish := cardTargets(&c)
	if err := row.Scan(dest...); err != nil {
		return c, err
	}
	finish()
	return c, nil
}

// cardTargets returns the Scan destinations for cardCols and the step that
// converts them into c once scanned.
func cardTargets(c *storage.Card) ([]any, func()) {
	var issued, changed, created, updated int64
	var must, locked int
	return []any{&c.ID, &c.HolderID, &c.Number, &c.Region, &issued, &c.Status, &c.CancelReason,
			&c.PIN.Verifier, &must, &c.PIN.Failures, &locked, &changed, &c.Version, &created, &updated}, func() {
			c.IssuedOn, c.PIN.ChangedAt, c.CreatedAt, c.UpdatedAt = fromMicros(issued), fromMicros(changed), fromMicros(created), fromMicros(updated)
			c.PIN.MustChange, c.PIN.Locked = must != 0, locked != 0
		}
}

func (r *q) oneCard(ctx context.Context, where string, arg any) (storage.Card, error) {
	c, err := scanCard(r.queryRow(ctx, `SELECT `+cardCols+` FROM cards WHERE `+where, arg))
	return c, r.s.mapErr(err)
}

// CreateCard implements storage.RegistryTx.
func (r *q) CreateCard(ctx context.Context, c storage.Card) (storage.Card, error) {
	if c.Number == "" || c.HolderID == "" {
		return c, fmt.Errorf("sql: card without number or holder: %w", storage.ErrInvalidRecord)
	}
	if c.ID == "" {
		c.ID = newID()
	}
	if c.Status == "" {
		c.Status = storage.CardActive
	}
	now := r.s.now().UTC()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	c.UpdatedAt = c.CreatedAt
	c.Version = 1
	c.PIN.Failures, c.PIN.Locked = 0, false
	_, err := r.exec(ctx, `INSERT INTO cards (id, holder_id, number, region, issued_on, status, cancel_reason, pin_verifier,
		pin_must_change, pin_failures, pin_locked, pin_changed_at, version, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, 1, ?, ?)`,
		c.ID, c.HolderID, c.Number, c.Region, micros(c.IssuedOn), string(c.Status), string(c.CancelReason), c.PIN.Verifier,
		b2i(c.PIN.MustChange), micros(c.PIN.ChangedAt), micros(c.CreatedAt), micros(c.UpdatedAt))
	if err != nil {
		return c, fmt.Errorf("sql: create card: %w", err)
	}
	return r.Card(ctx, c.ID)
}

// UpdateCard implements storage.RegistryTx.
func (r *q) UpdateCard(ctx context.Context, c storage.Card) (storage.Card, error) {
	res, err := r.exec(ctx, `UPDATE cards SET status = ?, cancel_reason = ?, region = ?, issued_on = ?, version = version + 1,
		updated_at = ? WHERE id = ? AND version = ?`,
		string(c.Status), string(c.CancelReason), c.Region, micros(c.IssuedOn), r.nowMicros(), c.ID, c.Version)
	if err != nil {
		return c, fmt.Errorf("sql: update card: %w", err)
	}
	if err := r.versionOutcome(ctx, res, "cards", c.ID); err != nil {
		return c, err
	}
	return r.Card(ctx, c.ID)
}

// versionOutcome turns "0 rows updated" into ErrConflict or ErrNotFound.
func (r *q) versionOutcome(ctx context.Context, res dbsql.Result, table, id string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return r.s.mapErr(err)
	}
	if n == 1 {
		return nil
	}
	var one int
	err = r.queryRow(ctx, `SELECT 1 FROM `+table+` WHERE id = ?`, id).Scan(&one)
	if err != nil {
		return r.s.mapErr(err)
	}
	return fmt.Errorf("sql: %s %s: %w", table, id, storage.ErrConflict)
}

// SetPIN implements storage.RegistryTx.
func (r *q) SetPIN(ctx context.Context, cardID string, verifier []byte, mustChange bool) error {
	return r.execOne(ctx, `UPDATE cards SET pin_verifier = ?, pin_must_change = ?, pin_failures = 0, pin_locked = 0,
		pin_changed_at = ? WHERE id = ?`, verifier, b2i(mustChange), r.nowMicros(), cardID)
}

// Card implements storage.RegistryReader.
func (r *q) Card(ctx context.Context, id string) (storage.Card, error) {
	return r.oneCard(ctx, `id = ?`, id)
}

// CardByNumber implements storage.RegistryReader.
func (r *q) CardByNumber(ctx context.Context, number string) (storage.Card, error) {
	return r.oneCard(ctx, `number = ?`, number)
}

// CardsOfHolder implements storage.RegistryReader.
func (r *q) CardsOfHolder(ctx context.Context, holderID string) ([]storage.Card, error) {
	rows, err := r.db.QueryContext(ctx, r.s.rebind(`SELECT `+cardCols+` FROM cards WHERE holder_id = ? ORDER BY created_at, id`), holderID)
	if err != nil {
		return nil, r.s.mapErr(err)
	}
	defer rows.Close()
	out := []storage.Card{}
	for rows.Next() {
		c, err := scanCard(rows)
		if err != nil {
			return nil, r.s.mapErr(err)
		}
		out = append(out, c)
	}
	return out, r.s.mapErr(rows.Err())
}

// ---- PIN counter ----

// ChargePINAttempt implements storage.PINCounter in one conditional UPDATE.
func (r *q) ChargePINAttempt(ctx context.Context, cardID string, lockAfter int) (storage.PINCounterState, error) {
	var st storage.PINCounterState
	var locked int
	err := r.queryRow(ctx, `UPDATE cards SET pin_failures = pin_failures + 1,
		pin_locked = CASE WHEN pin_failures + 1 >= ? THEN 1 ELSE 0 END
		WHERE id = ? AND pin_locked = 0 RETURNING pin_failures, pin_locked`, lockAfter, cardID).Scan(&st.Failures, &locked)
	if errors.Is(err, dbsql.ErrNoRows) {
		if _, err := r.Card(ctx, cardID); err != nil {
			return st, err
		}
		return storage.PINCounterState{Locked: true}, fmt.Errorf("sql: charge pin attempt: %w", storage.ErrPINLocked)
	}
	if err != nil {
		return st, r.s.mapErr(err)
	}
	st.Locked = locked != 0
	return st, nil
}

// RecordPINFailure implements storage.PINCounter in one UPDATE … RETURNING.
func (r *q) RecordPINFailure(ctx context.Context, cardID string, lockAfter int) (int, bool, error) {
	var failures, locked int
	err := r.queryRow(ctx, `UPDATE cards SET pin_failures = pin_failures + 1,
		pin_locked = CASE WHEN pin_locked = 1 OR pin_failures + 1 >= ? THEN 1 ELSE 0 END
		WHERE id = ? RETURNING pin_failures, pin_locked`, lockAfter, cardID).Scan(&failures, &locked)
	if err != nil {
		return 0, false, r.s.mapErr(err)
	}
	return failures, locked != 0, nil
}

// ResetPINFailures implements storage.PINCounter.
func (r *q) ResetPINFailures(ctx context.Context, cardID string) error {
	return r.execOne(ctx, `UPDATE cards SET pin_failures = 0, pin_locked = 0 WHERE id = ?`, cardID)
}

// AcceptPIN implements storage.PINCounter: one read, and a write only when
// there are failures to reset (a read at one instant is as atomic a test as
// the UPDATE: guesses charged before it are seen, later ones come after).
func (r *q) AcceptPIN(ctx context.Context, cardID string, verifier []byte) (bool, error) {
	var failures int
	err := r.queryRow(ctx, `SELECT pin_failures FROM cards WHERE id = ? AND pin_locked = 0 AND pin_verifier = ?`,
		cardID, verifier).Scan(&failures)
	switch {
	case errors.Is(err, dbsql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, r.s.mapErr(err)
	case failures == 0:
		return true, nil
	}
	res, err := r.gatedExec(ctx, `UPDATE cards SET pin_failures = 0 WHERE id = ? AND pin_locked = 0 AND pin_verifier = ?`,
		cardID, verifier)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, r.s.mapErr(err)
	}
	return n == 1, nil
}

// ---- e-cards ----

const ecardCols = `id, card_id, holder_id, level, status, version, revoked_at, created_at, updated_at`

func scanECard(row interface{ Scan(...any) error }) (storage.ECard, error) {
	var e storage.ECard
	dest, finish := ecardTargets(&e)
	if err := row.Scan(dest...); err != nil {
		return e, err
	}
	finish()
	return e, nil
}

func ecardTargets(e *storage.ECard) ([]any, func()) {
	var revoked, created, updated int64
	return []any{&e.ID, &e.CardID, &e.HolderID, &e.Level, &e.Status, &e.Version, &revoked, &created, &updated}, func() {
		e.RevokedAt, e.CreatedAt, e.UpdatedAt = fromMicros(revoked), fromMicros(created), fromMicros(updated)
	}
}

// ecardWithCardQuery reads an e-card and its card in one indexed join.
var ecardWithCardQuery = `SELECT ` + qualify("e", ecardCols) + `, ` + qualify("c", cardCols) +
	` FROM ecards e JOIN cards c ON c.id = e.card_id WHERE e.id = ?`

// qualify prefixes every column of a column list with alias.
func qualify(alias, cols string) string {
	parts := strings.Split(cols, ",")
	for i, p := range parts {
		parts[i] = alias + "." + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

// ECardWithCard implements storage.RegistryReader.
func (r *q) ECardWithCard(ctx context.Context, ecardID string) (storage.ECard, storage.Card, error) {
	return r.scanECardWithCard(r.queryRow(ctx, ecardWithCardQuery, ecardID))
}

// scanECardWithCard scans a row that starts with an e-card's and its card's
// columns (ecardCols, cardCols), then the columns scanned into extra.
func (r *q) scanECardWithCard(row *dbsql.Row, extra ...any) (storage.ECard, storage.Card, error) {
	var e storage.ECard
	var c storage.Card
	ed, efinish := ecardTargets(&e)
	cd, cfinish := cardTargets(&c)
	if err := row.Scan(append(append(ed, cd...), extra...)...); err != nil {
		return storage.ECard{}, storage.Card{}, r.s.mapErr(err)
	}
	efinish()
	cfinish()
	return e, c, nil
}

// ECardWithHolder implements storage.RegistryReader.
func (r *q) ECardWithHolder(ctx context.Context, ecardID string) (storage.Holder, storage.ECard, storage.Card, error) {
	var h storage.Holder
	var enc []byte
	var created int64
	e, c, err := r.scanECardWithCard(r.queryRow(ctx, ecardWithHolderQuery, ecardID), &h.ID, &h.Name, &enc, &h.SSNMasked, &created)
	if err != nil {
		return storage.Holder{}, storage.ECard{}, storage.Card{}, err
	}
	ssn, err := r.s.decryptSSN(h.ID, enc)
	if err != nil {
		return storage.Holder{}, storage.ECard{}, storage.Card{}, err
	}
	h.SSN, h.CreatedAt = ssn, fromMicros(created)
	return h, e, c, nil
}

// ecardWithHolderQuery is ecardWithCardQuery joined with the e-card's holder.
var ecardWithHolderQuery = `SELECT ` + qualify("e", ecardCols) + `, ` + qualify("c", cardCols) + `, ` + qualify("h", holderCols) +
	` FROM ecards e JOIN cards c ON c.id = e.card_id JOIN holders h ON h.id = e.holder_id WHERE e.id = ?`

// CreateECard implements storage.RegistryTx.
func (r *q) CreateECard(ctx context.Context, e storage.ECard) (storage.ECard, error) {
	if e.CardID == "" || e.HolderID == "" {
		return e, fmt.Errorf("sql: e-card without card or holder: %w", storage.ErrInvalidRecord)
	}
	if e.ID == "" {
		e.ID = newID()
	}
	if e.Status == "" {
		e.Status = storage.ECardActive
	}
	if e.Level == 0 {
		e.Level = 1
	}
	now := r.nowMicros()
	_, err := r.exec(ctx, `INSERT INTO ecards (id, card_id, holder_id, level, status, version, revoked_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)`, e.ID, e.CardID, e.HolderID, e.Level, string(e.Status), micros(e.RevokedAt), now, now)
	if err != nil {
		return e, fmt.Errorf("sql: create e-card: %w", err)
	}
	return r.ECard(ctx, e.ID)
}

// UpdateECard implements storage.RegistryTx.
func (r *q) UpdateECard(ctx context.Context, e storage.ECard) (storage.ECard, error) {
	now := r.nowMicros()
	revoked := micros(e.RevokedAt)
	if e.Status == storage.ECardRevoked && revoked == 0 {
		revoked = now
	}
	res, err := r.exec(ctx, `UPDATE ecards SET status = ?, level = ?, revoked_at = ?, version = version + 1, updated_at = ?
		WHERE id = ? AND version = ?`, string(e.Status), e.Level, revoked, now, e.ID, e.Version)
	if err != nil {
		return e, fmt.Errorf("sql: update e-card: %w", err)
	}
	if err := r.versionOutcome(ctx, res, "ecards", e.ID); err != nil {
		return e, err
	}
	return r.ECard(ctx, e.ID)
}

// ECard implements storage.RegistryReader.
func (r *q) ECard(ctx context.Context, id string) (storage.ECard, error) {
	e, err := scanECard(r.queryRow(ctx, `SELECT `+ecardCols+` FROM ecards WHERE id = ?`, id))
	return e, r.s.mapErr(err)
}

// LiveECardOfCard implements storage.RegistryReader.
func (r *q) LiveECardOfCard(ctx context.Context, cardID string) (storage.ECard, error) {
	e, err := scanECard(r.queryRow(ctx, `SELECT `+ecardCols+` FROM ecards WHERE card_id = ? AND status <> 'revoked'`, cardID))
	return e, r.s.mapErr(err)
}

// ECardsOfHolder implements storage.RegistryReader.
func (r *q) ECardsOfHolder(ctx context.Context, holderID string) ([]storage.ECard, error) {
	rows, err := r.db.QueryContext(ctx, r.s.rebind(`SELECT `+ecardCols+` FROM ecards WHERE holder_id = ? ORDER BY created_at, id`), holderID)
	if err != nil {
		return nil, r.s.mapErr(err)
	}
	defer rows.Close()
	out := []storage.ECard{}
	for rows.Next() {
		e, err := scanECard(rows)
		if err != nil {
			return nil, r.s.mapErr(err)
		}
		out = append(out, e)
	}
	return out, r.s.mapErr(rows.Err())
}

// ---- devices ----

const deviceCols = `id, ecard_id, thumbprint, public_key_jwk, channel, created_at, revoked_at`

func scanDevice(row interface{ Scan(...any) error }) (storage.Device, error) {
	var d storage.Device
	dest, finish := deviceTargets(&d)
	if err := row.Scan(dest...); err != nil {
		return d, err
	}
	finish()
	return d, nil
}

func deviceTargets(d *storage.Device) ([]any, func()) {
	var created, revoked int64
	return []any{&d.ID, &d.ECardID, &d.Thumbprint, &d.PublicKeyJWK, &d.Channel, &created, &revoked}, func() {
		d.CreatedAt, d.RevokedAt = fromMicros(created), fromMicros(revoked)
	}
}

// AddDevice implements storage.RegistryTx.
func (r *q) AddDevice(ctx context.Context, d storage.Device) (storage.Device, error) {
	if d.ECardID == "" || d.Thumbprint == "" || len(d.PublicKeyJWK) == 0 {
		return d, fmt.Errorf("sql: device without e-card, thumbprint or key: %w", storage.ErrInvalidRecord)
	}
	if d.ID == "" {
		d.ID = newID()
	}
	d.CreatedAt, d.RevokedAt = fromMicros(r.nowMicros()), time.Time{}
	_, err := r.exec(ctx, `INSERT INTO devices (id, ecard_id, thumbprint, public_key_jwk, channel, created_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, 0)`, d.ID, d.ECardID, d.Thumbprint, d.PublicKeyJWK, d.Channel, micros(d.CreatedAt))
	if err != nil {
		return d, fmt.Errorf("sql: add device: %w", err)
	}
	return d, nil
}

// RevokeDevice implements storage.RegistryTx.
func (r *q) RevokeDevice(ctx context.Context, id string) error {
	if _, err := r.Device(ctx, id); err != nil {
		return err
	}
	_, err := r.exec(ctx, `UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at = 0`, r.nowMicros(), id)
	return err
}

// Device implements storage.RegistryReader.
func (r *q) Device(ctx context.Context, id string) (storage.Device, error) {
	d, err := scanDevice(r.queryRow(ctx, `SELECT `+deviceCols+` FROM devices WHERE id = ?`, id))
	return d, r.s.mapErr(err)
}

// DeviceByThumbprint implements storage.RegistryReader.
func (r *q) DeviceByThumbprint(ctx context.Context, thumbprint string) (storage.Device, error) {
	d, err := scanDevice(r.queryRow(ctx, `SELECT `+deviceCols+` FROM devices WHERE thumbprint = ? AND revoked_at = 0`, thumbprint))
	return d, r.s.mapErr(err)
}

// deviceWithCardQuery reads a live device, its e-card and its card in one indexed join.
var deviceWithCardQuery = `SELECT ` + qualify("d", deviceCols) + `, ` + qualify("e", ecardCols) + `, ` + qualify("c", cardCols) +
	` FROM devices d JOIN ecards e ON e.id = d.ecard_id JOIN cards c ON c.id = e.card_id WHERE d.thumbprint = ? AND d.revoked_at = 0`

// DeviceWithCard implements storage.RegistryReader.
func (r *q) DeviceWithCard(ctx context.Context, thumbprint string) (storage.Device, storage.ECard, storage.Card, error) {
	var d storage.Device
	var e storage.ECard
	var c storage.Card
	dd, dfinish := deviceTargets(&d)
	ed, efinish := ecardTargets(&e)
	cd, cfinish := cardTargets(&c)
	if err := r.queryRow(ctx, deviceWithCardQuery, thumbprint).Scan(append(append(dd, ed...), cd...)...); err != nil {
		return storage.Device{}, storage.ECard{}, storage.Card{}, r.s.mapErr(err)
	}
	dfinish()
	efinish()
	cfinish()
	return d, e, c, nil
}

// Devices implements storage.RegistryReader.
func (r *q) Devices(ctx context.Context, ecardID string) ([]storage.Device, error) {
	rows, err := r.db.QueryContext(ctx, r.s.rebind(`SELECT `+deviceCols+` FROM devices WHERE ecard_id = ? ORDER BY created_at, id`), ecardID)
	if err != nil {
		return nil, r.s.mapErr(err)
	}
	defer rows.Close()
	out := []storage.Device{}
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, r.s.mapErr(err)
		}
		out = append(out, d)
	}
	return out, r.s.mapErr(rows.Err())
}
