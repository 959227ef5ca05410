-- A log of which tenants' configuration changed, by the transaction that changed it
-- (issue 13: a batch's cost must not grow with the tenants it touches). The Aggregator
-- used to probe every batch tenant's counter (tenant_config_versions) and its row in
-- tenants: two index probes per tenant per batch, a tenth of the database's time with
-- thousands of tenants a batch. It now reads the changes committed since its last read
-- (few, as a rule) and drops those tenants from its cache; only tenants it does not
-- hold are probed.
--
-- Exact without a clock: a reader remembers the oldest transaction still running when
-- it read (pg_snapshot_xmin of its statement's snapshot); every change of an older
-- transaction was committed, hence visible, by then, and the next read asks from there.
--
-- A row per tenant and changing statement: subscriptions, their plan changes and alerts
-- (what the Aggregator caches; plans and metrics have catalog_version), and a tenant's
-- deletion (the cache holds tenants known to exist). Rows older than a day are pruned by
-- the Aggregator's upkeep; catalog_version.changes_pruned_through says how far, so a
-- reader that last read before that starts its cache again. A TRUNCATE of a logged table
-- names no tenants: it moves changes_pruned_through to its own transaction, so every
-- cache starts again; so does this migration (a cache older than the log, of a process
-- that outlived the log's removal and return, knows nothing of what changed meanwhile).
CREATE TABLE config_changes (
    changed_by      xid8        NOT NULL DEFAULT pg_current_xact_id(),
    tenant_id       uuid        NOT NULL,
    changed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX config_changes_by ON config_changes (changed_by);
CREATE INDEX config_changes_at ON config_changes USING brin (changed_at);

ALTER TABLE catalog_version ADD COLUMN changes_pruned_through xid8 NOT NULL DEFAULT '0';
UPDATE catalog_version SET changes_pruned_through = pg_current_xact_id();

-- One insert per statement, from its transition tables (a plan migration moving
-- thousands of subscriptions writes them in one statement).
CREATE FUNCTION tally_log_config_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'tenants' THEN
        INSERT INTO config_changes (tenant_id) SELECT id FROM old_rows;
    ELSIF TG_TABLE_NAME = 'subscription_plan_changes' AND TG_OP = 'DELETE' THEN
        INSERT INTO config_changes (tenant_id)
        SELECT DISTINCT s.tenant_id FROM old_rows o JOIN subscriptions s ON s.id = o.subscription_id;
    ELSIF TG_TABLE_NAME = 'subscription_plan_changes' AND TG_OP = 'INSERT' THEN
        INSERT INTO config_changes (tenant_id)
        SELECT DISTINCT s.tenant_id FROM new_rows n JOIN subscriptions s ON s.id = n.subscription_id;
    ELSIF TG_TABLE_NAME = 'subscription_plan_changes' THEN
        INSERT INTO config_changes (tenant_id)
        SELECT s.tenant_id FROM new_rows n JOIN subscriptions s ON s.id = n.subscription_id
        UNION SELECT s.tenant_id FROM old_rows o JOIN subscriptions s ON s.id = o.subscription_id;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO config_changes (tenant_id) SELECT DISTINCT tenant_id FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO config_changes (tenant_id) SELECT DISTINCT tenant_id FROM old_rows;
    ELSE
        INSERT INTO config_changes (tenant_id) SELECT tenant_id FROM new_rows UNION SELECT tenant_id FROM old_rows;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION tally_log_config_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalog_version SET changes_pruned_through = greatest(changes_pruned_through, pg_current_xact_id());
    RETURN NULL;
END
$$;

CREATE TRIGGER subscriptions_inserted_log AFTER INSERT ON subscriptions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_log_config_changes();
CREATE TRIGGER subscriptions_updated_log AFTER UPDATE ON subscriptions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_log_config_changes();
CREATE TRIGGER subscriptions_deleted_log AFTER DELETE ON subscriptions
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_log_config_changes();
CREATE TRIGGER subscription_plan_changes_inserted_log AFTER INSERT ON subscription_plan_changes
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_log_config_changes();
CREATE TRIGGER subscription_plan_changes_updated_log AFTER UPDATE ON subscription_plan_changes
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_log_config_changes();
CREATE TRIGGER subscription_plan_changes_deleted_log AFTER DELETE ON subscription_plan_changes
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_log_config_changes();
CREATE TRIGGER usage_alerts_inserted_log AFTER INSERT ON usage_alerts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_log_config_changes();
CREATE TRIGGER usage_alerts_updated_log AFTER UPDATE ON usage_alerts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_log_config_changes();
CREATE TRIGGER usage_alerts_deleted_log AFTER DELETE ON usage_alerts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_log_config_changes();
CREATE TRIGGER tenants_deleted_log AFTER DELETE ON tenants
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_log_config_changes();
CREATE TRIGGER subscriptions_truncated_log AFTER TRUNCATE ON subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION tally_log_config_truncated();
CREATE TRIGGER subscription_plan_changes_truncated_log AFTER TRUNCATE ON subscription_plan_changes
    FOR EACH STATEMENT EXECUTE FUNCTION tally_log_config_truncated();
CREATE TRIGGER usage_alerts_truncated_log AFTER TRUNCATE ON usage_alerts
    FOR EACH STATEMENT EXECUTE FUNCTION tally_log_config_truncated();
CREATE TRIGGER tenants_truncated_log AFTER TRUNCATE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION tally_log_config_truncated();
