-- A subscription canceled before it starts (a tenant that scheduled one for later and
-- changed its mind) ends where it starts: no trial, no period, nothing billed, and it no
-- longer keeps the tenant from subscribing (it was refused with 409, and the tenant could
-- subscribe to nothing until it started). Its row stays, canceled, so the history says so.
ALTER TABLE subscriptions DROP CONSTRAINT IF EXISTS subscriptions_check1;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_ends_after_start CHECK (ends_at IS NULL OR ends_at >= started_at);
