-- A subscription canceled before it starts (a tenant that scheduled one for later and
-- changed its mind) ends where it starts: no trial, no period, nothing billed, and it no
-- longer keeps the tenant from subscribing (it was refused with 409, and the tenant could
-- subscribe to nothing until it started). Its row stays, canceled, so the history says so.
-- The check of 002 (ends_at > started_at) is found by what it says, not by the name
-- PostgreSQL gave it, and must be there to drop.
DO $$
DECLARE
    found text;
BEGIN
    SELECT conname INTO STRICT found FROM pg_constraint
     WHERE conrelid = 'subscriptions'::regclass AND contype = 'c'
       AND pg_get_constraintdef(oid) = 'CHECK (((ends_at IS NULL) OR (ends_at > started_at)))';
    EXECUTE format('ALTER TABLE subscriptions DROP CONSTRAINT %I', found);
END
$$;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_ends_after_start CHECK (ends_at IS NULL OR ends_at >= started_at);
