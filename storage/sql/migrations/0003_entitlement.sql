-- 0003: entitlement verification (issue 7, DESIGN.md §8): beneficiaries per
-- agency, the per-agency ordered event feed, webhook delivery cursors and dead
-- letters. Times are BIGINT Unix microseconds (UTC), 0 meaning "not set".

CREATE TABLE beneficiaries (
    id                  TEXT PRIMARY KEY,
    agency_id           TEXT NOT NULL,
    ssn_index           {{BLOB}} NOT NULL,      -- HMAC-SM3 blind index, as holders.ssn_index
    ssn_masked          TEXT NOT NULL,
    holder_id           TEXT NOT NULL DEFAULT '',
    benefit             TEXT NOT NULL,
    anchor              BIGINT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('certified', 'due', 'suspended', 'terminated')),
    certified_at        BIGINT NOT NULL,
    due_from            BIGINT NOT NULL,
    valid_until         BIGINT NOT NULL,
    method              TEXT NOT NULL DEFAULT '',
    act                 TEXT NOT NULL DEFAULT '',
    terminated_at       BIGINT NOT NULL DEFAULT 0,
    termination_reason  TEXT NOT NULL DEFAULT '',
    version             BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
-- Batch status and registration uniqueness: (agency, SSN, benefit).
CREATE UNIQUE INDEX beneficiaries_agency_ssn ON beneficiaries (agency_id, ssn_index, benefit);
-- Certification and termination fan-out across agencies.
CREATE INDEX beneficiaries_ssn ON beneficiaries (ssn_index);
-- Due list by month.
CREATE INDEX beneficiaries_agency_valid ON beneficiaries (agency_id, valid_until, id);
-- Sweeper: rows whose stored status is behind the clock.
CREATE INDEX beneficiaries_sweep_due ON beneficiaries (due_from) WHERE status = 'certified';
CREATE INDEX beneficiaries_sweep_valid ON beneficiaries (valid_until) WHERE status IN ('certified', 'due');

-- The last attestation JWT (~0.7 KB) lives beside the row, so the hot
-- beneficiary rows read by batch status stay narrow.
CREATE TABLE beneficiary_attestations (
    beneficiary_id  TEXT PRIMARY KEY,
    attestation     TEXT NOT NULL
);

INSERT INTO counters (name, value) VALUES ('entitlement', 0);

CREATE TABLE entitlement_events (
    seq             BIGINT PRIMARY KEY,
    agency_id       TEXT NOT NULL,
    beneficiary_id  TEXT NOT NULL,
    type            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    at              BIGINT NOT NULL
);
CREATE INDEX entitlement_events_agency ON entitlement_events (agency_id, seq);

CREATE TABLE webhook_state (
    agency_id    TEXT PRIMARY KEY,
    cursor_seq   BIGINT NOT NULL DEFAULT 0,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      BIGINT NOT NULL DEFAULT 0,
    last_error   TEXT NOT NULL DEFAULT '',
    lease_owner  TEXT NOT NULL DEFAULT '',
    lease_until  BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE webhook_dead_letters (
    agency_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    attempts    INTEGER NOT NULL,
    last_error  TEXT NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (agency_id, seq)
);
