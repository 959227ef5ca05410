-- A subscription that cannot be planned (a start before 2000, more due periods than a
-- run bills for one subscription, an error while reading its late usage) is recorded
-- as a failed item of the run, with the reason, and the run bills every other
-- subscription. Such an item names no period: its period_start is NULL.
ALTER TABLE billing_run_items ALTER COLUMN period_start DROP NOT NULL;
