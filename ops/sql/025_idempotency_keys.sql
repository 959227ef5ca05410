-- Idempotency-Key on the Billing API's POST, PATCH and DELETE requests, as Stripe's API has
-- it: a client that retries a request after a timeout or a dropped connection gets the
-- first answer again, and nothing is done twice (a second tenant, alert, webhook
-- endpoint, API key or billing run).
--
-- A row per principal ('admin' or a tenant's id) and key. Neither the key nor the answer is
-- stored as sent: the key as its SHA-256, the answer's body sealed (AES-GCM) with a key
-- derived from the Idempotency-Key, which only the client holds — an answer can carry a
-- secret shown once (a new tenant's API key, a webhook endpoint's signing secret), and
-- the database keeps no secret in the clear. `fingerprint` is the SHA-256 of
-- the request's method, path and query, and body: the same key with another request is
-- refused. `status` is NULL while the first request runs; then the answer (a success: a
-- failure releases the key, so the retry runs again). A row left running by a process
-- that died is taken over by a retry after five minutes; rows are kept for 24 hours.
CREATE TABLE idempotent_requests (
    principal    text        NOT NULL,
    key_sha256   bytea       NOT NULL,
    fingerprint  bytea       NOT NULL,
    status       integer,
    content_type text,
    location     text,
    sealed_body  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key_sha256)
);
CREATE INDEX idempotent_requests_created ON idempotent_requests (created_at);
