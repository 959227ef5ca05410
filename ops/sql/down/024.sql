-- Undoes 024_config_change_log (ops/rollback.sh): no log of configuration changes; an
-- older Aggregator probes every batch tenant's counter (tenant_config_versions, still kept).
DROP TRIGGER IF EXISTS subscriptions_inserted_log ON subscriptions;
DROP TRIGGER IF EXISTS subscriptions_updated_log ON subscriptions;
DROP TRIGGER IF EXISTS subscriptions_deleted_log ON subscriptions;
DROP TRIGGER IF EXISTS subscription_plan_changes_inserted_log ON subscription_plan_changes;
DROP TRIGGER IF EXISTS subscription_plan_changes_updated_log ON subscription_plan_changes;
DROP TRIGGER IF EXISTS subscription_plan_changes_deleted_log ON subscription_plan_changes;
DROP TRIGGER IF EXISTS usage_alerts_inserted_log ON usage_alerts;
DROP TRIGGER IF EXISTS usage_alerts_updated_log ON usage_alerts;
DROP TRIGGER IF EXISTS usage_alerts_deleted_log ON usage_alerts;
DROP TRIGGER IF EXISTS tenants_deleted_log ON tenants;
DROP TRIGGER IF EXISTS subscriptions_truncated_log ON subscriptions;
DROP TRIGGER IF EXISTS subscription_plan_changes_truncated_log ON subscription_plan_changes;
DROP TRIGGER IF EXISTS usage_alerts_truncated_log ON usage_alerts;
DROP TRIGGER IF EXISTS tenants_truncated_log ON tenants;
DROP FUNCTION IF EXISTS tally_log_config_changes();
DROP FUNCTION IF EXISTS tally_log_config_truncated();
ALTER TABLE catalog_version DROP COLUMN IF EXISTS changes_pruned_through;
DROP TABLE IF EXISTS config_changes;
