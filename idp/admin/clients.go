package admin

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/storage"
)

// Client management errors.
var (
	// ErrInvalidClient: the client registration breaks a rule; the wrapped
	// message names the field (safe to show to an operator).
	ErrInvalidClient = errors.New("admin: invalid client registration")
)

// SecretHasher hashes a generated client secret for storage.Client.SecretHash.
// The server and esscctl use idp/secret.Hasher (HMAC-SM3 under the key
// directory's client-secret key): the token endpoint compares with the same
// key. Client secrets are random, high-entropy values, so a keyed fast hash
// is right here and a slow password hash would only cap throughput.
type SecretHasher interface {
	Hash(ctx context.Context, data []byte) ([]byte, error)
}

// ClientSpec is a client registration as operators write it (JSON over the
// API, flags in esscctl).
type ClientSpec struct {
	ID                     string          `json:"client_id"`
	Name                   string          `json:"name"`
	Domain                 string          `json:"domain"`
	Profile                string          `json:"profile"`
	AuthMethod             string          `json:"auth_method"`
	JWKS                   json.RawMessage `json:"jwks,omitempty"`
	RedirectURIs           []string        `json:"redirect_uris,omitempty"`
	PostLogoutRedirectURIs []string        `json:"post_logout_redirect_uris,omitempty"`
	GrantTypes             []string        `json:"grant_types,omitempty"`
	Scopes                 []string        `json:"scopes,omitempty"`
	Purposes               []string        `json:"purposes,omitempty"`
	Sector                 string          `json:"sector,omitempty"`
	BackchannelLogoutURI   string          `json:"backchannel_logout_uri,omitempty"`
	WebhookURL             string          `json:"webhook_url,omitempty"`
	RequirePAR             bool            `json:"require_par,omitempty"`
	// IDTokenAlg (id_token_signed_response_alg): intl ES256 (default) or
	// RS256 (for libraries that verify only RS256); gm SM2SM3 only.
	IDTokenAlg string `json:"id_token_signed_response_alg,omitempty"`
}

// idTokenAlgs are the ID token algorithms a client of each profile may ask for.
var idTokenAlgs = map[string][]string{storage.ProfileIntl: {"ES256", "RS256"}, storage.ProfileGM: {"SM2SM3"}}

var grantTypes = []string{"authorization_code", "refresh_token", "client_credentials"}

// Validate checks spec and returns the storage record (without secret).
// Rules: client_id 3–64 of [A-Za-z0-9._-]; name 1–64 printable runes;
// profile intl|gm; auth method private_key_jwt (with a JWKS holding at least
// one key) or client_secret_basic (intl only, DESIGN.md §5); grant types
// from authorization_code, refresh_token, client_credentials (default
// authorization_code); authorization_code needs at least one redirect URI;
// redirect and logout URIs absolute https (http only for loopback hosts),
// no fragment; back-channel logout and webhook URLs absolute https; scopes
// and purposes 1–64 of [a-z0-9._:-]; sector defaults to the first redirect
// URI's host. Every violation is reported at once, joined.
func (spec ClientSpec) Validate() (storage.Client, error) {
	var errs []error
	bad := func(f string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+f, append([]any{ErrInvalidClient}, a...)...))
	}
	if !tokenOK(spec.ID, 3, 64, func(r rune) bool {
		return r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '_' || r == '-')
	}) {
		bad("client_id must be 3-64 characters of A-Z a-z 0-9 . _ -")
	}
	if n := strings.TrimSpace(spec.Name); n == "" || utf8.RuneCountInString(n) > 64 || strings.IndexFunc(n, unicode.IsControl) >= 0 {
		bad("name must be 1-64 printable characters")
	}
	if spec.Profile != storage.ProfileIntl && spec.Profile != storage.ProfileGM {
		bad("profile must be intl or gm")
	} else if spec.IDTokenAlg != "" && !slices.Contains(idTokenAlgs[spec.Profile], spec.IDTokenAlg) {
		bad("id_token_signed_response_alg must be one of %v for the %s profile", idTokenAlgs[spec.Profile], spec.Profile)
	}
	switch spec.AuthMethod {
	case storage.AuthPrivateKeyJWT:
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if len(spec.JWKS) == 0 || json.Unmarshal(spec.JWKS, &set) != nil || len(set.Keys) == 0 {
			bad("private_key_jwt needs jwks with at least one key")
		}
	case storage.AuthClientSecretBasic:
		if spec.Profile == storage.ProfileGM {
			bad("gm clients must use private_key_jwt")
		}
		if len(spec.JWKS) != 0 {
			bad("jwks is only for private_key_jwt")
		}
	default:
		bad("auth_method must be private_key_jwt or client_secret_basic")
	}
	grants := spec.GrantTypes
	if len(grants) == 0 {
		grants = []string{"authorization_code"}
	}
	for _, g := range grants {
		if !slices.Contains(grantTypes, g) {
			bad("grant type %q not supported", g)
		}
	}
	if slices.Contains(grants, "authorization_code") && len(spec.RedirectURIs) == 0 {
		bad("authorization_code needs at least one redirect_uri")
	}
	for _, u := range spec.RedirectURIs {
		if !redirectOK(u) {
			bad("redirect_uri %q must be absolute https (http only on loopback) without fragment", trunc(u))
		}
	}
	for _, u := range spec.PostLogoutRedirectURIs {
		if !redirectOK(u) {
			bad("post_logout_redirect_uri %q must be absolute https without fragment", trunc(u))
		}
	}
	for f, u := range map[string]string{"backchannel_logout_uri": spec.BackchannelLogoutURI, "webhook_url": spec.WebhookURL} {
		if u != "" && !httpsOK(u, false) {
			bad("%s must be an absolute https URL", f)
		}
	}
	word := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("._:-", r)
	}
	for _, s := range spec.Scopes {
		if !tokenOK(s, 1, 64, word) {
			bad("scope %q is malformed", trunc(s))
		}
	}
	for _, s := range spec.Purposes {
		if !tokenOK(s, 1, 64, word) {
			bad("purpose %q is malformed", trunc(s))
		}
	}
	sector := spec.Sector
	if sector == "" && len(spec.RedirectURIs) > 0 {
		if u, err := url.Parse(spec.RedirectURIs[0]); err == nil {
			sector = u.Hostname()
		}
	}
	if sector == "" {
		sector = spec.ID
	}
	if len(errs) > 0 {
		return storage.Client{}, errors.Join(errs...)
	}
	return storage.Client{ID: spec.ID, Name: strings.TrimSpace(spec.Name), Domain: spec.Domain, Profile: spec.Profile,
		AuthMethod: spec.AuthMethod, JWKS: []byte(spec.JWKS), RedirectURIs: spec.RedirectURIs,
		PostLogoutRedirectURIs: spec.PostLogoutRedirectURIs, GrantTypes: grants, Scopes: spec.Scopes, Purposes: spec.Purposes,
		Sector: sector, BackchannelLogoutURI: spec.BackchannelLogoutURI, WebhookURL: spec.WebhookURL, RequirePAR: spec.RequirePAR,
		IDTokenAlg: spec.IDTokenAlg}, nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func tokenOK(s string, min, max int, ok func(rune) bool) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for _, r := range s {
		if !ok(r) {
			return false
		}
	}
	return true
}

func redirectOK(raw string) bool { return httpsOK(raw, true) }

func httpsOK(raw string, loopbackHTTP bool) bool {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" || u.User != nil || len(raw) > 2000 {
		return false
	}
	switch u.Scheme {
	case "https":
		return true
	case "http":
		h := u.Hostname()
		return loopbackHTTP && (h == "127.0.0.1" || h == "localhost" || h == "::1")
	}
	return false
}

// Clients registers and manages OAuth clients; every change is one registry
// transaction with its audit entry (and an outbox event for disable).
type Clients struct {
	reg    storage.Registry
	hasher SecretHasher
	now    func() time.Time
}

// NewClients returns client management over reg. hasher may be nil when
// only private_key_jwt clients are created (client_secret_basic then fails).
func NewClients(reg storage.Registry, hasher SecretHasher, now func() time.Time) (*Clients, error) {
	if reg == nil {
		return nil, errors.New("admin: NewClients needs a registry")
	}
	if now == nil {
		now = time.Now
	}
	return &Clients{reg: reg, hasher: hasher, now: now}, nil
}

// EventClientDisabled is written to the outbox when a client is disabled,
// so its tokens can be revoked ("client_id").
const EventClientDisabled = "client.disabled"

// Create registers a client. For client_secret_basic it generates a 256-bit
// secret, stores only its hash and returns the secret ONCE (empty otherwise).
// card.ErrExists when the id is taken; ErrInvalidClient for a bad spec.
func (c *Clients) Create(ctx context.Context, actor card.Actor, spec ClientSpec) (storage.Client, string, error) {
	rec, err := spec.Validate()
	if err != nil {
		return storage.Client{}, "", err
	}
	var secret string
	if rec.AuthMethod == storage.AuthClientSecretBasic {
		if c.hasher == nil {
			return storage.Client{}, "", fmt.Errorf("%w: client secrets are not supported here", ErrInvalidClient)
		}
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return storage.Client{}, "", err
		}
		secret = base64.RawURLEncoding.EncodeToString(b[:])
		if rec.SecretHash, err = c.hasher.Hash(ctx, []byte(secret)); err != nil {
			return storage.Client{}, "", err
		}
	}
	var out storage.Client
	err = c.reg.Tx(ctx, func(tx storage.RegistryTx) error {
		var err error
		if out, err = tx.CreateClient(ctx, rec); err != nil {
			return err
		}
		return auditTx(ctx, tx, c.now(), actor, "client.create", rec.ID, map[string]any{"profile": rec.Profile,
			"auth_method": rec.AuthMethod, "scopes": rec.Scopes, "redirect_uris": rec.RedirectURIs})
	})
	if err != nil {
		return storage.Client{}, "", mapStorage(err)
	}
	return out, secret, nil
}

// Get returns one client (card.ErrNotFound when unknown).
func (c *Clients) Get(ctx context.Context, id string) (storage.Client, error) {
	cl, err := c.reg.Client(ctx, id)
	return cl, mapStorage(err)
}

// List returns up to limit clients after afterID, ordered by id.
func (c *Clients) List(ctx context.Context, afterID string, limit int) ([]storage.Client, error) {
	cls, err := c.reg.Clients(ctx, afterID, limit)
	return cls, mapStorage(err)
}

// Disable disables the client (idempotent) under the optimistic version
// rule: version, when non-zero, must be the version the operator saw
// (card.ErrConflict otherwise).
func (c *Clients) Disable(ctx context.Context, actor card.Actor, id string, version int64) (storage.Client, error) {
	var out storage.Client
	err := c.reg.Tx(ctx, func(tx storage.RegistryTx) error {
		cl, err := tx.Client(ctx, id)
		if err != nil {
			return err
		}
		if version != 0 && cl.Version != version {
			return fmt.Errorf("%w: client is at version %d", card.ErrConflict, cl.Version)
		}
		if cl.Disabled {
			out = cl
			return nil
		}
		cl.Disabled = true
		if out, err = tx.UpdateClient(ctx, cl); err != nil {
			return err
		}
		b, _ := json.Marshal(map[string]string{"client_id": id})
		if _, err := tx.AppendEvent(ctx, storage.Event{Type: EventClientDisabled, Aggregate: id, Payload: b}); err != nil {
			return err
		}
		return auditTx(ctx, tx, c.now(), actor, "client.disable", id, nil)
	})
	return out, mapStorage(err)
}

func auditTx(ctx context.Context, tx storage.RegistryTx, now time.Time, a card.Actor, action, target string, details map[string]any) error {
	var b []byte
	if details != nil {
		var err error
		if b, err = json.Marshal(details); err != nil {
			return err
		}
	}
	_, err := tx.AppendAudit(ctx, storage.AuditEntry{At: now.UTC(), Actor: a.ID, Act: a.OnBehalfOf, Action: action, Target: target, Details: b})
	return err
}

// mapStorage maps storage sentinels to the card package's (one vocabulary
// for the HTTP mapping and the CLI).
func mapStorage(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, card.ErrConflict), errors.Is(err, card.ErrNotFound), errors.Is(err, card.ErrExists), errors.Is(err, card.ErrUnavailable):
		return err
	case errors.Is(err, storage.ErrUnavailable):
		return fmt.Errorf("%w: %w", card.ErrUnavailable, err)
	case errors.Is(err, storage.ErrConflict):
		return fmt.Errorf("%w: %w", card.ErrConflict, err)
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: %w", card.ErrNotFound, err)
	case errors.Is(err, storage.ErrDuplicate):
		return fmt.Errorf("%w: %w", card.ErrExists, err)
	}
	return err
}
