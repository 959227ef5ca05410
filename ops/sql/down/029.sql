-- Undoes 029_stripe_events_pending (ops/rollback.sh): an older build claims without it.
DROP INDEX IF EXISTS stripe_webhook_events_pending;
