-- Dedup across months. usage_events is partitioned by the month of the event's time, so
-- its unique key had to hold that month: the same id re-sent with a time in another
-- month counted twice. Every (tenant_id, event_id) ever stored now has one row here,
-- inserted in the same transaction as the event (ON CONFLICT DO NOTHING; only the rows
-- that insert returned reach usage_events and the rollups). The table is not
-- partitioned; the Aggregator's upkeep deletes ids first seen more than 100 days ago
-- (the edge refuses events older than 90 days), so it holds about one retention window.
-- The partition-local key of usage_events is dropped: this one replaces it, and one
-- index per event instead of two keeps the write path as cheap as before.
--
-- Upgrade: stop every Aggregator before applying it (`./ops/local.sh up` does). One of the
-- previous version inserts relying on the key dropped below and writes no ids, so while it
-- runs on the new schema a redelivered event could be stored twice. The lock makes the
-- backfill and the drop one step no insert can slip between.
LOCK TABLE usage_events IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE usage_event_ids (
    tenant_id   uuid        NOT NULL,
    event_id    text        NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);
-- Ids arrive in time order, so a BRIN index finds the expired ones for almost nothing.
CREATE INDEX usage_event_ids_first_seen ON usage_event_ids USING brin (first_seen);

INSERT INTO usage_event_ids (tenant_id, event_id, first_seen)
SELECT tenant_id, event_id, min(received_at) FROM usage_events GROUP BY tenant_id, event_id;

ALTER TABLE usage_events DROP CONSTRAINT usage_events_pkey;
