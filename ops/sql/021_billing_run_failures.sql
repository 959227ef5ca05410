-- The Invoicer's /metrics counts the billing runs of the last week that left invoices
-- failed (tally_billing_runs_with_failures, an alert of ops/prometheus/): failed items
-- are few, so a partial index finds them without reading every item ever issued.
CREATE INDEX billing_run_items_failed ON billing_run_items (billing_run_id) WHERE status = 'failed';
