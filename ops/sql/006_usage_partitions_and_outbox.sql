-- Growth: usage_events partitioned by the month of the event's time, so the raw
-- events of invoiced months can be detached and archived while the rollups stay.
--
-- Dedup key. A partitioned table's unique keys must hold its partition key, so the
-- key is (tenant_id, event_id, occurred_month): a resent event (same id, same time)
-- or a resent id whose time was re-stamped within the same UTC month is counted
-- once. A month's partition is detached only once the whole month is older than
-- the oldest time a worker accepts (90 days, SPEC §3), so no duplicate can arrive
-- for it any more. README "Growth" gives the limits.
--
-- No foreign key to tenants: the Aggregator parks events of unknown tenants in
-- the same transaction, before inserting (an FK would add a lookup per row).

ALTER TABLE usage_events RENAME TO usage_events_unpartitioned;
ALTER INDEX usage_events_metric_time RENAME TO usage_events_unpartitioned_metric_time;
ALTER TABLE usage_events_unpartitioned RENAME CONSTRAINT usage_events_pkey TO usage_events_unpartitioned_pkey;

CREATE TABLE usage_events (
    tenant_id       uuid        NOT NULL,
    event_id        text        NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
    metric          text        NOT NULL CHECK (metric ~ '^[a-z][a-z0-9_]{0,99}$'),
    name            text,
    quantity        numeric(17,4) NOT NULL CHECK (quantity >= 0 AND quantity <= 1000000000000),
    unit            text,
    occurred_at     timestamptz NOT NULL,
    -- The UTC month of occurred_at: the partition key.
    occurred_month  date        NOT NULL CHECK (occurred_month = date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date),
    received_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    metadata        jsonb       NOT NULL DEFAULT '{}',
    message_id      text,
    PRIMARY KEY (tenant_id, event_id, occurred_month)
) PARTITION BY RANGE (occurred_month);
-- Time-range reads of one tenant (the edge hours of a usage read, late usage):
-- every metric of a short range, so the metric is a filter, not a key column.
CREATE INDEX usage_events_tenant_time ON usage_events (tenant_id, occurred_at);

-- Creates the monthly partitions usage_events_YYYY_MM covering [from_month, to_month].
-- Idempotent; the Aggregator calls it at start and every hour for the months a
-- worker can accept (now - 4 months … now + 2 months).
CREATE FUNCTION tally_ensure_usage_partitions(from_month date, to_month date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    month date := date_trunc('month', from_month)::date;
    created integer := 0;
    partition_name text;
BEGIN
    WHILE month <= to_month LOOP
        partition_name := format('usage_events_%s', to_char(month, 'YYYY_MM'));
        IF to_regclass(partition_name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
                           partition_name, month, (month + interval '1 month')::date);
            created := created + 1;
        END IF;
        month := (month + interval '1 month')::date;
    END LOOP;
    RETURN created;
END $$;

DO $$
DECLARE
    oldest date;
    newest date;
BEGIN
    SELECT coalesce(min(occurred_at), now()) AT TIME ZONE 'UTC', coalesce(max(occurred_at), now()) AT TIME ZONE 'UTC'
      INTO oldest, newest FROM usage_events_unpartitioned;
    PERFORM tally_ensure_usage_partitions(least(oldest, (now() - interval '4 months')::date),
                                          greatest(newest, (now() + interval '2 months')::date));
END $$;

INSERT INTO usage_events (tenant_id, event_id, metric, name, quantity, unit, occurred_at, occurred_month,
                          received_at, metadata, message_id)
SELECT tenant_id, event_id, metric, name, quantity, unit, occurred_at,
       date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date, received_at, metadata, message_id
  FROM usage_events_unpartitioned;
DROP TABLE usage_events_unpartitioned;

-- The outbox (004) gets a lease: a relay claims rows for `claimed_until`, so several
-- relays (Aggregator and Invoicer processes) never send a row at the same time, and a
-- relay that died mid-way is replaced when its lease runs out. `message_id` is the
-- stable dedup key of what the row announces (e.g. one alert firing per period): a
-- unique constraint, and the AMQP message id the Notifier deduplicates on.
ALTER TABLE outbox ADD COLUMN claimed_until timestamptz;

ALTER TABLE parked_events ADD COLUMN code text;
