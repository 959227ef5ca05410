-- Usage events, exactly once per (tenant, idempotency key), and their hourly rollups.
-- Quantities are numeric: an event holds at most 1e12 with 4 decimals, and sums are
-- numeric(38,4), so a billion events a day for centuries cannot overflow (the seed
-- design's DECIMAL(10,4) overflowed at one million API calls).

CREATE TABLE usage_events (
    tenant_id       uuid        NOT NULL REFERENCES tenants (id),
    event_id        text        NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
    metric          text        NOT NULL CHECK (metric ~ '^[a-z][a-z0-9_]{0,99}$'),
    name            text,
    quantity        numeric(17,4) NOT NULL CHECK (quantity >= 0 AND quantity <= 1000000000000),
    unit            text,
    -- When the usage happened (set by the producer); it decides the billing period.
    occurred_at     timestamptz NOT NULL,
    -- When Tally stored it; late events are those received after their period was invoiced.
    received_at     timestamptz NOT NULL DEFAULT now(),
    metadata        jsonb       NOT NULL DEFAULT '{}',
    message_id      text,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX usage_events_metric_time ON usage_events (tenant_id, metric, occurred_at);

-- Hourly partial aggregates, merged into a period value by the billing engine:
-- sum and count add, max takes the greater, latest keeps the event with the greatest
-- (occurred_at, event_id), unique_count merges the value sets in usage_rollup_values.
CREATE TABLE usage_rollups (
    tenant_id       uuid        NOT NULL,
    metric          text        NOT NULL,
    hour            timestamptz NOT NULL CHECK (date_trunc('hour', hour) = hour),
    quantity_sum    numeric(38,4) NOT NULL DEFAULT 0,
    event_count     bigint      NOT NULL DEFAULT 0,
    quantity_max    numeric(17,4),
    latest_at       timestamptz,
    latest_event_id text,
    latest_quantity numeric(17,4),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, metric, hour)
);

CREATE TABLE usage_rollup_values (
    tenant_id       uuid        NOT NULL,
    metric          text        NOT NULL,
    hour            timestamptz NOT NULL,
    value           text        NOT NULL,
    PRIMARY KEY (tenant_id, metric, hour, value)
);

-- Events a worker could not accept, with the reason and the field at fault.
-- Nothing is dropped silently: parked events can be listed and replayed.
CREATE TABLE parked_events (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       text,
    event_id        text,
    reason          text        NOT NULL,
    field           text,
    payload         text        NOT NULL,
    message_id      text,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    replayed_at     timestamptz
);
CREATE INDEX parked_events_open ON parked_events (parked_at) WHERE replayed_at IS NULL;
