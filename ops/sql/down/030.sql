-- Undoes 030_stripe_detached_cards (ops/rollback.sh): an older build does not look detachments up.
DROP INDEX IF EXISTS stripe_webhook_events_detached;
