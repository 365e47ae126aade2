package sql

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/essc-project/essc/storage"
)

// ---- clients ----

const clientCols = `id, name, domain, profile, auth_method, secret_hash, jwks, redirect_uris, post_logout_redirect_uris,
	grant_types, scopes, purposes, sector, backchannel_logout_uri, webhook_url, require_par, disabled, lifetimes,
	id_token_alg, version, created_at, updated_at`

func scanClient(row interface{ Scan(...any) error }) (storage.Client, error) {
	var c storage.Client
	var redirect, postLogout, grants, scopes, purposes, lifetimes string
	var par, disabled int
	var created, updated int64
	if err := row.Scan(&c.ID, &c.Name, &c.Domain, &c.Profile, &c.AuthMethod, &c.SecretHash, &c.JWKS, &redirect, &postLogout,
		&grants, &scopes, &purposes, &c.Sector, &c.BackchannelLogoutURI, &c.WebhookURL, &par, &disabled, &lifetimes,
		&c.IDTokenAlg, &c.Version, &created, &updated); err != nil {
		return c, err
	}
	var err error
	for _, f := range []struct {
		dst *[]string
		src string
	}{{&c.RedirectURIs, redirect}, {&c.PostLogoutRedirectURIs, postLogout}, {&c.GrantTypes, grants}, {&c.Scopes, scopes}, {&c.Purposes, purposes}} {
		if *f.dst, err = parseList(f.src); err != nil {
			return c, err
		}
	}
	if err := json.Unmarshal([]byte(lifetimes), &c.Lifetimes); err != nil {
		return c, fmt.Errorf("sql: stored lifetimes malformed: %w", storage.ErrInvalidRecord)
	}
	c.RequirePAR, c.Disabled = par != 0, disabled != 0
	c.CreatedAt, c.UpdatedAt = fromMicros(created), fromMicros(updated)
	return c, nil
}

func clientArgs(c storage.Client) ([]any, error) {
	if c.ID == "" || (c.Profile != storage.ProfileIntl && c.Profile != storage.ProfileGM) {
		return nil, fmt.Errorf("sql: client needs an id and a profile intl|gm: %w", storage.ErrInvalidRecord)
	}
	lt, err := json.Marshal(c.Lifetimes)
	if err != nil {
		return nil, err
	}
	return []any{c.Name, c.Domain, c.Profile, c.AuthMethod, c.SecretHash, c.JWKS, jsonList(c.RedirectURIs),
		jsonList(c.PostLogoutRedirectURIs), jsonList(c.GrantTypes), jsonList(c.Scopes), jsonList(c.Purposes), c.Sector,
		c.BackchannelLogoutURI, c.WebhookURL, b2i(c.RequirePAR), b2i(c.Disabled), string(lt), c.IDTokenAlg}, nil
}

// CreateClient implements storage.RegistryTx.
func (r *q) CreateClient(ctx context.Context, c storage.Client) (storage.Client, error) {
	args, err := clientArgs(c)
	if err != nil {
		return c, err
	}
	now := r.nowMicros()
	args = append([]any{c.ID}, args...)
	args = append(args, now, now)
	_, err = r.exec(ctx, `INSERT INTO clients (`+clientCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)`, args...)
	if err != nil {
		return c, fmt.Errorf("sql: create client: %w", err)
	}
	return r.Client(ctx, c.ID)
}

// UpdateClient implements storage.RegistryTx.
func (r *q) UpdateClient(ctx context.Context, c storage.Client) (storage.Client, error) {
	args, err := clientArgs(c)
	if err != nil {
		return c, err
	}
	args = append(args, r.nowMicros(), c.ID, c.Version)
	res, err := r.exec(ctx, `UPDATE clients SET name = ?, domain = ?, profile = ?, auth_method = ?, secret_hash = ?, jwks = ?,
		redirect_uris = ?, post_logout_redirect_uris = ?, grant_types = ?, scopes = ?, purposes = ?, sector = ?,
		backchannel_logout_uri = ?, webhook_url = ?, require_par = ?, disabled = ?, lifetimes = ?, id_token_alg = ?,
		version = version + 1, updated_at = ? WHERE id = ? AND version = ?`, args...)
	if err != nil {
		return c, fmt.Errorf("sql: update client: %w", err)
	}
	if err := r.versionOutcome(ctx, res, "clients", c.ID); err != nil {
		return c, err
	}
	return r.Client(ctx, c.ID)
}

// Client implements storage.RegistryReader: one primary-key lookup.
func (r *q) Client(ctx context.Context, id string) (storage.Client, error) {
	c, err := scanClient(r.queryRow(ctx, `SELECT `+clientCols+` FROM clients WHERE id = ?`, id))
	return c, r.s.mapErr(err)
}

// Clients implements storage.RegistryReader.
func (r *q) Clients(ctx context.Context, afterID string, limit int) ([]storage.Client, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	rows, err := r.db.QueryContext(ctx, r.s.rebind(`SELECT `+clientCols+` FROM clients WHERE id > ? ORDER BY id LIMIT ?`), afterID, limit)
	if err != nil {
		return nil, r.s.mapErr(err)
	}
	defer rows.Close()
	out := []storage.Client{}
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, r.s.mapErr(err)
		}
		out = append(out, c)
	}
	return out, r.s.mapErr(rows.Err())
}

// ---- delegations ----

const delegationCols = `id, principal_holder_id, agent_holder_id, kind, scopes, valid_from, valid_until, revoked_at, created_at`

func scanDelegation(row interface{ Scan(...any) error }) (storage.Delegation, error) {
	var d storage.Delegation
	var scopes string
	var from, until, revoked, created int64
	if err := row.Scan(&d.ID, &d.PrincipalHolderID, &d.AgentHolderID, &d.Kind, &scopes, &from, &until, &revoked, &created); err != nil {
		return d, err
	}
	var err error
	if d.Scopes, err = parseList(scopes); err != nil {
		return d, err
	}
	d.ValidFrom, d.ValidUntil, d.RevokedAt, d.CreatedAt = fromMicros(from), fromMicros(until), fromMicros(revoked), fromMicros(created)
	return d, nil
}

// CreateDelegation implements storage.RegistryTx.
func (r *q) CreateDelegation(ctx context.Context, d storage.Delegation) (storage.Delegation, error) {
	if d.PrincipalHolderID == "" || d.AgentHolderID == "" {
		return d, fmt.Errorf("sql: delegation without principal or agent: %w", storage.ErrInvalidRecord)
	}
	if d.ID == "" {
		d.ID = newID()
	}
	now := r.nowMicros()
	if d.ValidFrom.IsZero() {
		d.ValidFrom = fromMicros(now)
	}
	_, err := r.exec(ctx, `INSERT INTO delegations (`+delegationCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)`,
		d.ID, d.PrincipalHolderID, d.AgentHolderID, d.Kind, jsonList(d.Scopes), micros(d.ValidFrom), micros(d.ValidUntil), now)
	if err != nil {
		return d, fmt.Errorf("sql: create delegation: %w", err)
	}
	return r.Delegation(ctx, d.ID)
}

// RevokeDelegation implements storage.RegistryTx.
func (r *q) RevokeDelegation(ctx context.Context, id string) error {
	if _, err := r.Delegation(ctx, id); err != nil {
		return err
	}
	_, err := r.exec(ctx, `UPDATE delegations SET revoked_at = ? WHERE id = ? AND revoked_at = 0`, r.nowMicros(), id)
	return err
}

// Delegation implements storage.RegistryReader.
func (r *q) Delegation(ctx context.Context, id string) (storage.Delegation, error) {
	d, err := scanDelegation(r.queryRow(ctx, `SELECT `+delegationCols+` FROM delegations WHERE id = ?`, id))
	return d, r.s.mapErr(err)
}

// DelegationsOfAgent implements storage.RegistryReader.
func (r *q) DelegationsOfAgent(ctx context.Context, agentHolderID string) ([]storage.Delegation, error) {
	return r.delegations(ctx, `agent_holder_id = ?`, agentHolderID)
}

// DelegationsOfPrincipal implements storage.RegistryReader.
func (r *q) DelegationsOfPrincipal(ctx context.Context, principalHolderID string) ([]storage.Delegation, error) {
	return r.delegations(ctx, `principal_holder_id = ?`, principalHolderID)
}

func (r *q) delegations(ctx context.Context, where string, arg any) ([]storage.Delegation, error) {
	rows, err := r.db.QueryContext(ctx, r.s.rebind(`SELECT `+delegationCols+` FROM delegations WHERE `+where+` ORDER BY created_at, id`), arg)
	if err != nil {
		return nil, r.s.mapErr(err)
	}
	defer rows.Close()
	out := []storage.Delegation{}
	for rows.Next() {
		d, err := scanDelegation(rows)
		if err != nil {
			return nil, r.s.mapErr(err)
		}
		out = append(out, d)
	}
	return out, r.s.mapErr(rows.Err())
}
