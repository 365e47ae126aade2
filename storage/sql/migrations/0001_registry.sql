-- 0001: the durable registry. Portable SQL for PostgreSQL and SQLite; the only
-- dialect switch is {{BLOB}} (BYTEA | BLOB). Times are BIGINT Unix microseconds
-- (UTC), 0 meaning "not set"; booleans are SMALLINT 0/1; string lists are JSON text.
-- Entitlement tables are added by issue 7 in a later migration.

CREATE TABLE holders (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    ssn_index   {{BLOB}} NOT NULL,            -- HMAC-SM3(index key, SSN)
    ssn_enc     {{BLOB}} NOT NULL,            -- 0x01 || nonce || SM4-GCM(SSN), AAD binds the holder id
    ssn_masked  TEXT NOT NULL,                -- 4113**********1234
    created_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX holders_ssn_index ON holders (ssn_index);

CREATE TABLE cards (
    id              TEXT PRIMARY KEY,
    holder_id       TEXT NOT NULL REFERENCES holders (id),
    number          TEXT NOT NULL,
    region          TEXT NOT NULL,
    issued_on       BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'lost', 'replaced', 'cancelled')),
    cancel_reason   TEXT NOT NULL DEFAULT '' CHECK (cancel_reason IN ('', 'death', 'emigration', 'other')),
    pin_verifier    {{BLOB}},
    pin_must_change SMALLINT NOT NULL DEFAULT 1,
    pin_failures    INTEGER NOT NULL DEFAULT 0,
    pin_locked      SMALLINT NOT NULL DEFAULT 0,
    pin_changed_at  BIGINT NOT NULL DEFAULT 0,
    version         BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX cards_number ON cards (number);
CREATE INDEX cards_holder ON cards (holder_id);

CREATE TABLE ecards (
    id          TEXT PRIMARY KEY,
    card_id     TEXT NOT NULL REFERENCES cards (id),
    holder_id   TEXT NOT NULL REFERENCES holders (id),
    level       SMALLINT NOT NULL CHECK (level IN (1, 2)),
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
    version     BIGINT NOT NULL,
    revoked_at  BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
-- One live (non-revoked) e-card per physical card, enforced by the database.
CREATE UNIQUE INDEX ecards_one_live_per_card ON ecards (card_id) WHERE status <> 'revoked';
CREATE INDEX ecards_card ON ecards (card_id);
CREATE INDEX ecards_holder ON ecards (holder_id);

CREATE TABLE devices (
    id              TEXT PRIMARY KEY,
    ecard_id        TEXT NOT NULL REFERENCES ecards (id),
    thumbprint      TEXT NOT NULL,
    public_key_jwk  {{BLOB}} NOT NULL,
    channel         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    revoked_at      BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX devices_live_thumbprint ON devices (thumbprint) WHERE revoked_at = 0;
CREATE INDEX devices_ecard ON devices (ecard_id);

CREATE TABLE clients (
    id                          TEXT PRIMARY KEY,
    name                        TEXT NOT NULL,
    domain                      TEXT NOT NULL,
    profile                     TEXT NOT NULL CHECK (profile IN ('intl', 'gm')),
    auth_method                 TEXT NOT NULL,
    secret_hash                 {{BLOB}},
    jwks                        {{BLOB}},
    redirect_uris               TEXT NOT NULL,
    post_logout_redirect_uris   TEXT NOT NULL,
    grant_types                 TEXT NOT NULL,
    scopes                      TEXT NOT NULL,
    purposes                    TEXT NOT NULL,
    sector                      TEXT NOT NULL,
    backchannel_logout_uri      TEXT NOT NULL,
    webhook_url                 TEXT NOT NULL,
    require_par                 SMALLINT NOT NULL,
    disabled                    SMALLINT NOT NULL,
    lifetimes                   TEXT NOT NULL,
    version                     BIGINT NOT NULL,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);

CREATE TABLE delegations (
    id                  TEXT PRIMARY KEY,
    principal_holder_id TEXT NOT NULL REFERENCES holders (id),
    agent_holder_id     TEXT NOT NULL REFERENCES holders (id),
    kind                TEXT NOT NULL CHECK (kind IN ('guardian', 'agent')),
    scopes              TEXT NOT NULL,
    valid_from          BIGINT NOT NULL,
    valid_until         BIGINT NOT NULL DEFAULT 0,
    revoked_at          BIGINT NOT NULL DEFAULT 0,
    created_at          BIGINT NOT NULL
);
CREATE INDEX delegations_principal ON delegations (principal_holder_id);
CREATE INDEX delegations_agent ON delegations (agent_holder_id);

-- Serialised counters: updating the row holds its lock until commit, so outbox
-- sequence numbers are handed out in commit order.
CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('outbox', 0);

CREATE TABLE outbox (
    seq        BIGINT PRIMARY KEY,
    type       TEXT NOT NULL,
    aggregate  TEXT NOT NULL,
    payload    TEXT NOT NULL,
    at         BIGINT NOT NULL
);

CREATE TABLE outbox_cursors (
    consumer  TEXT PRIMARY KEY,
    seq       BIGINT NOT NULL
);

CREATE TABLE audit_log (
    seq      BIGINT PRIMARY KEY,
    at       BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    act      TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    details  {{BLOB}} NOT NULL,
    prev     {{BLOB}},
    chain    {{BLOB}} NOT NULL
);

-- The head of the audit chain: last seq and chain value. Appends lock this row.
CREATE TABLE audit_head (
    id     SMALLINT PRIMARY KEY,
    seq    BIGINT NOT NULL,
    chain  {{BLOB}}
);
INSERT INTO audit_head (id, seq, chain) VALUES (1, 0, NULL);
