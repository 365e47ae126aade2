-- 0004: remembered consent: which scopes a holder granted to a relying party
-- (issue 5: ask only for data not granted before; essc.ssn is never
-- remembered). One row per holder and client; scopes space-separated, sorted.
CREATE TABLE consents (
    holder_id   TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    granted_at  BIGINT NOT NULL,
    PRIMARY KEY (holder_id, client_id)
);
