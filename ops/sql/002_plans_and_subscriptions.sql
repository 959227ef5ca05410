-- Plans, billable metrics and subscriptions (SPEC §2).

-- How each metric aggregates over a period. A metric that is not listed is
-- aggregated with `sum` (SPEC §2: an unknown metric is accepted).
CREATE TABLE billable_metrics (
    code            text        PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{0,99}$'),
    name            text        NOT NULL,
    aggregation     text        NOT NULL DEFAULT 'sum'
                                CHECK (aggregation IN ('sum', 'count', 'max', 'latest', 'unique_count')),
    -- The metadata field counted by `unique_count`.
    unique_field    text,
    unit            text,
    CHECK ((aggregation = 'unique_count') = (unique_field IS NOT NULL))
);

INSERT INTO billable_metrics (code, name, aggregation, unit) VALUES
    ('estimates', 'Estimates', 'sum', 'estimate'),
    ('api_calls', 'API calls', 'sum', 'api_call'),
    ('documents', 'Documents', 'sum', 'document'),
    ('users', 'Seats', 'max', 'user');

-- `quotas` and `overage_rates` map a metric code to a decimal string (quantities
-- and cents per unit, held exactly); `enforcement` maps a metric to 'hard' or
-- 'soft' (default soft). A metric missing from `quotas` has no quota.
CREATE TABLE subscription_plans (
    slug            text        PRIMARY KEY CHECK (slug ~ '^[a-z][a-z0-9_-]{0,63}$'),
    name            text        NOT NULL,
    base_cents      bigint      NOT NULL CHECK (base_cents >= 0),
    currency        text        NOT NULL DEFAULT 'usd',
    billing_interval text       NOT NULL DEFAULT 'month' CHECK (billing_interval IN ('month', 'year')),
    quotas          jsonb       NOT NULL DEFAULT '{}',
    overage_rates   jsonb       NOT NULL DEFAULT '{}',
    enforcement     jsonb       NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Seeded exactly as SPEC §2. 999999 is the plan's way of saying Unlimited.
INSERT INTO subscription_plans (slug, name, base_cents, quotas, overage_rates) VALUES
    ('starter', 'Starter', 29900,
     '{"estimates": "50", "api_calls": "1000", "users": "3"}',
     '{"estimates": "500", "api_calls": "10", "users": "1000"}'),
    ('professional', 'Professional', 99900,
     '{"estimates": "200", "api_calls": "10000", "users": "10"}',
     '{"estimates": "400", "api_calls": "8", "users": "800"}'),
    ('enterprise', 'Enterprise', 299900,
     '{"estimates": "999999", "api_calls": "999999", "users": "999999"}',
     '{"estimates": "0", "api_calls": "0", "users": "0"}');

CREATE TABLE subscriptions (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid        NOT NULL REFERENCES tenants (id),
    status          text        NOT NULL DEFAULT 'active'
                                CHECK (status IN ('trialing', 'active', 'canceled')),
    started_at      timestamptz NOT NULL,
    trial_end       timestamptz,
    -- Periods are derived from the anchor (the trial end when there is a trial).
    anchor          timestamptz NOT NULL,
    billing_interval text       NOT NULL DEFAULT 'month' CHECK (billing_interval IN ('month', 'year')),
    -- When set, the subscription's last period ends here (cancel now or at period end).
    ends_at         timestamptz,
    cancel_requested_at timestamptz,
    stripe_subscription_id text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (trial_end IS NULL OR trial_end > started_at),
    CHECK (ends_at IS NULL OR ends_at > started_at)
);
CREATE INDEX subscriptions_tenant ON subscriptions (tenant_id);

-- The plan in force at instant t is the change with the greatest effective_at <= t.
-- Upgrades take effect at the moment asked for; downgrades at the next period start.
CREATE TABLE subscription_plan_changes (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id uuid        NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    plan_slug       text        NOT NULL REFERENCES subscription_plans (slug),
    effective_at    timestamptz NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('start', 'upgrade', 'downgrade')),
    requested_at    timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription_id, effective_at)
);
