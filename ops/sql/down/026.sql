-- Undoes 026_cancel_before_start (ops/rollback.sh): an older build requires a subscription
-- to end after it starts. Subscriptions canceled before they started never started: no
-- usage of theirs was billed and no invoice or billing-run item names them; they are
-- deleted (their plan changes with them) rather than given a microsecond of life that an
-- older build would invoice.
DELETE FROM subscriptions s WHERE s.ends_at = s.started_at
   AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.subscription_id = s.id)
   AND NOT EXISTS (SELECT 1 FROM billing_run_items b WHERE b.subscription_id = s.id);
ALTER TABLE subscriptions DROP CONSTRAINT IF EXISTS subscriptions_ends_after_start;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_check1 CHECK (ends_at IS NULL OR ends_at > started_at);
