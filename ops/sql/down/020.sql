-- Undoes 020_invoice_listing (ops/rollback.sh): only an index.
DROP INDEX IF EXISTS invoices_listing;
