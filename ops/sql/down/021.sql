-- Undoes 021_billing_run_failures (ops/rollback.sh): only an index.
DROP INDEX IF EXISTS billing_run_items_failed;
