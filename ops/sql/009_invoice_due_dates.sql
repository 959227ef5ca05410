-- Invoices say when they are due (issue 11): due_at = issued_at + the Invoicer's
-- payment terms (TALLY_PAYMENT_TERMS_DAYS, default 30), set when the invoice is issued
-- and, like the rest of a finalized invoice, never changed. Invoices issued before this
-- migration get the default terms.

ALTER TABLE invoices ADD COLUMN due_at timestamptz;
UPDATE invoices SET due_at = issued_at + interval '30 days';
ALTER TABLE invoices
    ALTER COLUMN due_at SET NOT NULL,
    ADD CONSTRAINT invoices_due_at_not_before_issue CHECK (due_at >= issued_at);
