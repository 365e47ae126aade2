-- 0002: sign-ins (completed logins), for back-channel logout across replicas,
-- the app's login notices and "not me".
CREATE TABLE sign_ins (
    sid         TEXT PRIMARY KEY,
    holder_id   TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    profile     TEXT NOT NULL,
    subject     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    acr         TEXT NOT NULL,
    browser     TEXT NOT NULL,
    at          BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sign_ins_holder ON sign_ins (holder_id, at);
CREATE INDEX sign_ins_expiry ON sign_ins (expires_at);
