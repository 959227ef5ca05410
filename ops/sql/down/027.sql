-- Undoes 027_invoice_customer (ops/rollback.sh): an older build draws an invoice's PDF with
-- the tenant's current name and billing email.
ALTER TABLE invoices DROP COLUMN IF EXISTS customer_name, DROP COLUMN IF EXISTS customer_email;
