-- Undoes 025_idempotency_keys (ops/rollback.sh): an older build ignores Idempotency-Key, so a
-- retry after the rollback runs again.
DROP TABLE IF EXISTS idempotent_requests;
