-- The pricing catalog (SPEC §2.1): a plan is a code (`subscription_plans.slug`) with
-- numbered versions; a version is immutable once a subscription uses it, and every plan
-- change of a subscription names the version it bills with.

CREATE TABLE plan_versions (
    plan_slug        text        NOT NULL REFERENCES subscription_plans (slug),
    version          integer     NOT NULL CHECK (version >= 1),
    name             text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- ISO 4217, lower case as Stripe writes it; amounts are in its minor unit.
    currency         text        NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    billing_interval text        NOT NULL CHECK (billing_interval IN ('month', 'year')),
    base_cents       bigint      NOT NULL CHECK (base_cents >= 0),
    -- The trial a subscription gets when it is created without saying.
    trial_days       integer     NOT NULL DEFAULT 0 CHECK (trial_days BETWEEN 0 AND 730),
    -- One object per metric, in metric order: {"metric", "enforcement", "quota"?, and
    -- "model" with its fields: standard {included, unit_price}, graduated and volume
    -- {tiers: [{up_to, unit_price, flat_cents}]}, package {included, size, price_cents}}.
    -- Decimals are strings (exact); a metric without "model" is not priced.
    charges          jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(charges) = 'array'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (plan_slug, version)
);

-- Every plan so far becomes its version 1, priced as before: overage above the quota
-- at the overage rate is a standard charge with the quota included; a metric with a
-- rate but no quota was never billed, so it has no model.
INSERT INTO plan_versions (plan_slug, version, name, currency, billing_interval, base_cents, charges, created_at)
SELECT p.slug, 1, p.name, lower(p.currency), p.billing_interval, p.base_cents,
       coalesce((
           SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                      'metric', m.metric,
                      'enforcement', coalesce(p.enforcement ->> m.metric, 'soft'),
                      'quota', p.quotas ->> m.metric,
                      'model', CASE WHEN p.quotas ? m.metric THEN 'standard' END,
                      'included', p.quotas ->> m.metric,
                      'unit_price', CASE WHEN p.quotas ? m.metric THEN coalesce(p.overage_rates ->> m.metric, '0') END))
                  ORDER BY m.metric)
             FROM (SELECT jsonb_object_keys(p.quotas) UNION SELECT jsonb_object_keys(p.overage_rates)
                   UNION SELECT jsonb_object_keys(p.enforcement)) AS m (metric)
       ), '[]'::jsonb),
       p.created_at
  FROM subscription_plans p;

-- What a plan code keeps of its own: when it was archived (no new subscriptions).
ALTER TABLE subscription_plans
    DROP COLUMN name, DROP COLUMN base_cents, DROP COLUMN currency, DROP COLUMN billing_interval,
    DROP COLUMN quotas, DROP COLUMN overage_rates, DROP COLUMN enforcement,
    ADD COLUMN archived_at timestamptz;

-- Every change so far billed with the plan's one version.
ALTER TABLE subscription_plan_changes ADD COLUMN plan_version integer NOT NULL DEFAULT 1;
ALTER TABLE subscription_plan_changes ALTER COLUMN plan_version DROP DEFAULT;
ALTER TABLE subscription_plan_changes
    ADD FOREIGN KEY (plan_slug, plan_version) REFERENCES plan_versions (plan_slug, version);
CREATE INDEX subscription_plan_changes_version ON subscription_plan_changes (plan_slug, plan_version);
-- A move to another version of the same plan, from a period start (POST /v1/plans/{code}/migrations).
ALTER TABLE subscription_plan_changes DROP CONSTRAINT subscription_plan_changes_kind_check;
ALTER TABLE subscription_plan_changes ADD CONSTRAINT subscription_plan_changes_kind_check
    CHECK (kind IN ('start', 'upgrade', 'downgrade', 'migration'));

-- A new or changed version moves the catalog's counter (migration 017), as plans did.
CREATE TRIGGER plan_versions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plan_versions
    FOR EACH STATEMENT EXECUTE FUNCTION tally_catalog_changed();
