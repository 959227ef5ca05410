-- What the Invoicer's /metrics counts at every scrape, and `invoicer stripe list` shows:
-- invoices Stripe refused for good, and Stripe events set aside. Both are few; partial
-- indexes keep those counts from reading every invoice or event.
CREATE INDEX invoices_stripe_failed ON invoices (issued_at) WHERE stripe_status = 'failed';
CREATE INDEX stripe_webhook_events_failed ON stripe_webhook_events (received_at)
    WHERE failed_at IS NOT NULL AND processed_at IS NULL;
