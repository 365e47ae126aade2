-- 0005: a client may ask for its ID tokens in another algorithm of its
-- profile (id_token_signed_response_alg): RS256 for intl clients whose
-- library verifies only RS256 (Spring Security's default). Empty: the
-- profile's default (ES256 on intl, SM2SM3 on gm).
ALTER TABLE clients ADD COLUMN id_token_alg TEXT NOT NULL DEFAULT '';
