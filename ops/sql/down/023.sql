-- Undoes 023_config_changes_lock_usage (ops/rollback.sh): changes to subscriptions no
-- longer take their tenants' usage locks (an older Aggregator takes them exclusive itself
-- to complete a period).
DROP TRIGGER IF EXISTS subscriptions_inserted_lock_usage ON subscriptions;
DROP TRIGGER IF EXISTS subscriptions_updated_lock_usage ON subscriptions;
DROP TRIGGER IF EXISTS subscription_plan_changes_inserted_lock_usage ON subscription_plan_changes;
DROP TRIGGER IF EXISTS subscription_plan_changes_updated_lock_usage ON subscription_plan_changes;
DROP FUNCTION IF EXISTS tally_lock_tenant_usage();
