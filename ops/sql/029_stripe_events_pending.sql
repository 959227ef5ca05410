-- The Invoicer claims Stripe's stored events one at a time, oldest pending first (each
-- applied in a transaction of its own): without an index on the pending ones every
-- claim scanned and sorted the whole table, which only grows.
CREATE INDEX stripe_webhook_events_pending ON stripe_webhook_events (received_at)
    WHERE processed_at IS NULL AND failed_at IS NULL;
