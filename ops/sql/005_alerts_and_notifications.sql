-- Usage alerts, their firing state, webhook endpoints and sent notifications.

CREATE TABLE usage_alerts (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    metric          text        NOT NULL CHECK (metric ~ '^[a-z][a-z0-9_]{0,99}$'),
    kind            text        NOT NULL CHECK (kind IN ('threshold', 'quota', 'anomaly')),
    threshold_value numeric(38,4),
    threshold_percentage numeric(7,2) CHECK (threshold_percentage > 0),
    channels        text[]      NOT NULL DEFAULT '{email}'
                                CHECK (channels <@ ARRAY['email', 'webhook'] AND cardinality(channels) > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'threshold' OR threshold_value IS NOT NULL),
    CHECK (kind <> 'quota' OR threshold_percentage IS NOT NULL)
);
CREATE INDEX usage_alerts_tenant ON usage_alerts (tenant_id, metric);

-- An alert fires at most once per billing period for each threshold it crosses.
CREATE TABLE alert_firings (
    alert_id        uuid        NOT NULL REFERENCES usage_alerts (id) ON DELETE CASCADE,
    period_start    timestamptz NOT NULL,
    threshold_key   text        NOT NULL,
    value           numeric(38,4) NOT NULL,
    fired_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert_id, period_start, threshold_key)
);

CREATE TABLE webhook_endpoints (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url             text        NOT NULL CHECK (url ~ '^https?://'),
    -- The signing secret must be readable to sign deliveries (HMAC-SHA256).
    secret          text        NOT NULL,
    event_types     text[]      NOT NULL DEFAULT '{}',
    active          boolean     NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Every email and webhook delivery, deduplicated by a stable key so a redelivered
-- event does not notify twice.
CREATE TABLE notifications (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedup_key       text        NOT NULL UNIQUE,
    channel         text        NOT NULL CHECK (channel IN ('email', 'webhook')),
    tenant_id       uuid        REFERENCES tenants (id),
    recipient       text        NOT NULL,
    event_type      text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
