-- A change to a tenant's subscriptions or their plan changes can move its billing periods:
-- the events an Aggregator is storing may fall in a period its configuration does not
-- know yet. Such a change now takes the tenants' usage locks exclusive (class 13, each
-- tenant's bucket: the lock UsagePeriodTotals.lockUsage takes shared while a batch stores
-- events), so it waits for the batches storing their usage to commit, and the batches
-- after it read the configuration it committed. Aggregators then complete periods
-- without exclusive locks of their own: two completing one period meet on its
-- usage_periods row.
--
-- Once per statement, every bucket in one order (as the Aggregator takes them), so a
-- statement changing thousands of subscriptions and a batch storing their usage never
-- wait on each other in a cycle. An update locks only where a column a period depends
-- on changed (not, say, a Stripe id); a delete (its tenant deleted) moves no period of
-- usage still counted.
CREATE FUNCTION tally_lock_tenant_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'subscriptions' AND TG_OP = 'INSERT' THEN
        PERFORM pg_advisory_xact_lock(13, b) FROM (
            SELECT DISTINCT (hashtextextended(n.tenant_id::text, 13) & 511)::int AS b FROM changed_rows n ORDER BY 1
        ) AS buckets;
    ELSIF TG_TABLE_NAME = 'subscriptions' THEN
        PERFORM pg_advisory_xact_lock(13, b) FROM (
            SELECT DISTINCT (hashtextextended(t::text, 13) & 511)::int AS b
              FROM changed_rows n JOIN previous_rows o ON o.id = n.id
             CROSS JOIN LATERAL (VALUES (n.tenant_id), (o.tenant_id)) AS tenant (t)
             WHERE (n.tenant_id, n.status, n.started_at, n.trial_end, n.anchor, n.billing_interval, n.ends_at)
                   IS DISTINCT FROM (o.tenant_id, o.status, o.started_at, o.trial_end, o.anchor, o.billing_interval, o.ends_at)
             ORDER BY 1
        ) AS buckets;
    ELSE
        PERFORM pg_advisory_xact_lock(13, b) FROM (
            SELECT DISTINCT (hashtextextended(s.tenant_id::text, 13) & 511)::int AS b
              FROM changed_rows n JOIN subscriptions s ON s.id = n.subscription_id ORDER BY 1
        ) AS buckets;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER subscriptions_inserted_lock_usage AFTER INSERT ON subscriptions
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_lock_tenant_usage();
CREATE TRIGGER subscriptions_updated_lock_usage AFTER UPDATE ON subscriptions
    REFERENCING OLD TABLE AS previous_rows NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_lock_tenant_usage();
CREATE TRIGGER subscription_plan_changes_inserted_lock_usage AFTER INSERT ON subscription_plan_changes
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_lock_tenant_usage();
CREATE TRIGGER subscription_plan_changes_updated_lock_usage AFTER UPDATE ON subscription_plan_changes
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_lock_tenant_usage();
