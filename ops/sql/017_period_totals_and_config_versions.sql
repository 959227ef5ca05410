-- Usage totals per billing period, kept as usage arrives, and change counters for what
-- the Aggregator caches (issue 13: a batch's cost must not grow with the tenants it
-- touches, nor with the length of their periods).
--
-- A row of usage_periods says: the totals of this tenant over [period_start, period_end)
-- are complete. The Aggregator adds a range (computing it once from the rollups and the
-- edge events) before it first evaluates a period, holding the tenant's advisory lock;
-- from then on every event it stores is added, in the same statement that stores it, to
-- every complete range of its tenant that contains its time. So at any snapshot the
-- totals of a range equal an aggregation of the raw events over it, whatever the
-- subscriptions say today, and reading a period is a handful of rows instead of a month
-- of hourly rollups.
--
-- Upgrade: stop every Aggregator before applying it (`./ops/local.sh up` does); one of
-- the previous version would store events without adding them to the ranges.
CREATE TABLE usage_periods (
    tenant_id       uuid        NOT NULL,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL CHECK (period_end > period_start),
    completed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, period_start, period_end)
);

-- sum and count add, max takes the greater, latest keeps the greatest
-- (occurred_at, event_id bytewise, quantity) — as usage_rollups do.
CREATE TABLE usage_period_totals (
    tenant_id       uuid        NOT NULL,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    metric          text        NOT NULL,
    quantity_sum    numeric(38,4) NOT NULL,
    event_count     bigint      NOT NULL,
    quantity_max    numeric(17,4),
    latest_at       timestamptz,
    latest_event_id text,
    latest_quantity numeric(17,4),
    PRIMARY KEY (tenant_id, period_start, period_end, metric),
    FOREIGN KEY (tenant_id, period_start, period_end) REFERENCES usage_periods ON DELETE CASCADE
);

-- The distinct values of unique_count metrics over a range (their count is the value).
CREATE TABLE usage_period_values (
    tenant_id       uuid        NOT NULL,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    metric          text        NOT NULL,
    value           text        NOT NULL,
    PRIMARY KEY (tenant_id, period_start, period_end, metric, value),
    FOREIGN KEY (tenant_id, period_start, period_end) REFERENCES usage_periods ON DELETE CASCADE
);

-- Change counters. The Aggregator caches the metric catalog, the plans, and each
-- tenant's subscriptions and alerts; it reads these counters in every transaction, after
-- taking its tenants' locks, and reloads what changed — so no decision uses a stale copy.
CREATE TABLE catalog_version (
    singleton       boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    version         bigint      NOT NULL
);
INSERT INTO catalog_version (version) VALUES (1);

CREATE TABLE tenant_config_versions (
    tenant_id       uuid        PRIMARY KEY,
    version         bigint      NOT NULL
);

CREATE FUNCTION tally_catalog_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalog_version SET version = version + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER billable_metrics_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON billable_metrics
    FOR EACH STATEMENT EXECUTE FUNCTION tally_catalog_changed();
CREATE TRIGGER subscription_plans_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON subscription_plans
    FOR EACH STATEMENT EXECUTE FUNCTION tally_catalog_changed();

CREATE FUNCTION tally_tenant_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed uuid[];
BEGIN
    IF TG_TABLE_NAME = 'subscription_plan_changes' THEN
        IF TG_OP = 'DELETE' THEN
            changed := ARRAY(SELECT tenant_id FROM subscriptions WHERE id = OLD.subscription_id);
        ELSE
            changed := ARRAY(SELECT tenant_id FROM subscriptions WHERE id = NEW.subscription_id);
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        changed := ARRAY[OLD.tenant_id];
    ELSIF TG_OP = 'UPDATE' THEN
        changed := ARRAY[OLD.tenant_id, NEW.tenant_id];
    ELSE
        changed := ARRAY[NEW.tenant_id];
    END IF;
    INSERT INTO tenant_config_versions AS v (tenant_id, version)
    SELECT DISTINCT t, 1 FROM unnest(changed) AS t WHERE t IS NOT NULL
    ON CONFLICT (tenant_id) DO UPDATE SET version = v.version + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER subscriptions_changed AFTER INSERT OR UPDATE OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION tally_tenant_config_changed();
CREATE TRIGGER subscription_plan_changes_changed AFTER INSERT OR UPDATE OR DELETE ON subscription_plan_changes
    FOR EACH ROW EXECUTE FUNCTION tally_tenant_config_changed();
CREATE TRIGGER usage_alerts_changed AFTER INSERT OR UPDATE OR DELETE ON usage_alerts
    FOR EACH ROW EXECUTE FUNCTION tally_tenant_config_changed();
