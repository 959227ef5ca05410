-- Pushing invoices to Stripe (issue 6).
--
-- A tenant's payment provider decides whether its invoices go to Stripe. An invoice of
-- a `stripe` tenant is issued with stripe_status 'pending'; an Invoicer with
-- STRIPE_API_KEY claims it (FOR UPDATE SKIP LOCKED), finds or creates the customer,
-- subscription, invoice items and invoice in Stripe (looking for what an interrupted
-- attempt already created before creating anything, and sending an Idempotency-Key
-- derived from our ids), finalizes it and records 'synced'. A failed attempt is retried
-- with backoff; after 8 it is 'failed' with the error, until `invoicer stripe retry`.

ALTER TABLE tenants
    ADD COLUMN payment_provider text NOT NULL DEFAULT 'none' CHECK (payment_provider IN ('none', 'stripe'));

ALTER TABLE invoices
    ADD COLUMN stripe_status          text CHECK (stripe_status IN ('pending', 'synced', 'failed')),
    ADD COLUMN stripe_invoice_status  text,
    ADD COLUMN stripe_attempts        integer NOT NULL DEFAULT 0,
    ADD COLUMN stripe_next_attempt_at timestamptz,
    ADD COLUMN stripe_error           text,
    ADD COLUMN stripe_synced_at       timestamptz;
CREATE INDEX invoices_stripe_pending ON invoices (stripe_next_attempt_at) WHERE stripe_status = 'pending';

-- A payment method's provider-side changes arrive by webhook; updated_at says when.
ALTER TABLE payment_methods ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- Adjustment invoices (SPEC §2 step 3): late usage of a subscription that has ended is
-- billed by the next run on an invoice of its own, as often as late usage arrives. One
-- invoice per period still holds for period invoices; an adjustment invoice is unique
-- per billing run item instead (the item records it; the billed_usage snapshot it
-- writes means the same late usage is never billed twice).
ALTER TABLE invoices DROP CONSTRAINT invoices_subscription_id_period_start_kind_key;
CREATE UNIQUE INDEX invoices_one_per_period ON invoices (subscription_id, period_start) WHERE kind = 'period';
ALTER TABLE billing_run_items
    ADD COLUMN kind text NOT NULL DEFAULT 'period' CHECK (kind IN ('period', 'adjustment'));
