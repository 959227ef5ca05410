-- The dedup key of usage_event_ids in the order (event_id, tenant_id) instead of
-- (tenant_id, event_id): the same uniqueness, but ids made by the metering library are
-- UUIDv7 — time first — so every insert now lands at the right edge of one index
-- instead of at the end of each tenant's range. A batch of events of 5,000 tenants
-- touched 5,000 index pages (and wrote a full-page image of each after a checkpoint);
-- now it touches a handful, as a batch of one tenant does. Ids a client makes up in
-- another form land where they did before, in a random place.
--
-- Nothing reads this table by tenant on the write path (the Aggregator only inserts with
-- ON CONFLICT DO NOTHING; upkeep deletes by first_seen through its BRIN index).
--
-- Upgrade: building the new key locks the table — Aggregators wait — for about 10 s per
-- 10 million ids on this machine (one retention window of ids is kept). On a large
-- table, build it first without blocking anything, then run the migration, which then
-- only swaps the keys:
--   CREATE UNIQUE INDEX CONCURRENTLY usage_event_ids_by_id ON usage_event_ids (event_id, tenant_id);
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE c.relname = 'usage_event_ids_by_id' AND i.indrelid = 'usage_event_ids'::regclass AND i.indisvalid AND i.indisunique
    ) THEN
        ALTER TABLE usage_event_ids DROP CONSTRAINT usage_event_ids_pkey,
            ADD CONSTRAINT usage_event_ids_pkey PRIMARY KEY USING INDEX usage_event_ids_by_id;
    ELSE
        DROP INDEX IF EXISTS usage_event_ids_by_id;  -- left invalid by a CONCURRENTLY that failed
        ALTER TABLE usage_event_ids DROP CONSTRAINT usage_event_ids_pkey, ADD PRIMARY KEY (event_id, tenant_id);
    END IF;
END $$;
