-- Idempotency-Key on the Billing API's POST, PATCH and DELETE requests, as Stripe's API has
-- it: a client that retries a request after a timeout or a dropped connection gets the
-- first answer again, and nothing is done twice (a second tenant, alert, webhook
-- endpoint, API key or billing run).
--
-- A row per principal ('admin', a tenant's id, or a tenant's dashboard) and key. Neither
-- the key nor the answer is stored as sent: the key as an HMAC under a server secret, the
-- answer's body sealed (AES-GCM) with a key derived from the Idempotency-Key and that
-- secret — an answer can carry a secret shown once (a new tenant's API key, a webhook
-- endpoint's signing secret), and what the database holds opens only with both. `fingerprint` is the SHA-256 of
-- the request's method, path and query, and body: the same key with another request is
-- refused. `status` is NULL while the first request runs; then the answer (a success: a
-- failure releases the key, so the retry runs again). `claim_id` names the request that
-- holds the key: only it keeps its answer or releases it. A row left running by a process
-- that died is taken over by a retry after five minutes; rows are kept for 24 hours.
CREATE TABLE idempotent_requests (
    principal    text        NOT NULL,
    key_digest   bytea       NOT NULL,
    fingerprint  bytea       NOT NULL,
    claim_id     uuid        NOT NULL,
    status       integer,
    content_type text,
    location     text,
    sealed_body  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key_digest)
);
CREATE INDEX idempotent_requests_created ON idempotent_requests (created_at);
