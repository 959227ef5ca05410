-- A Stripe webhook event that cannot be applied is set aside with the reason instead
-- of blocking every later one: the applier runs each event in its own savepoint.
-- `invoicer stripe list` shows them; `invoicer stripe retry --events` applies them again.
ALTER TABLE stripe_webhook_events
    ADD COLUMN failed_at timestamptz,
    ADD COLUMN error     text;
