-- Undoes 016_stripe_failure_indexes (ops/rollback.sh): only indexes.
DROP INDEX IF EXISTS invoices_stripe_failed;
DROP INDEX IF EXISTS stripe_webhook_events_failed;
