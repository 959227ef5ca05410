-- When each parked event was accepted (its message's timestamp; for one parked by the
-- database statement, the earliest of its batch): `aggregator dlq replay` stamps its messages
-- with it, so an event keeps the acceptance its 90-day limit counts from through replays and
-- parks again. Events parked before this keep NULL and are replayed with their parked_at.
ALTER TABLE parked_events ADD COLUMN accepted_at timestamptz;
