-- Undoes 028_parked_accepted_at (ops/rollback.sh): an older build replays parked events
-- stamped with the time they were parked.
ALTER TABLE parked_events DROP COLUMN IF EXISTS accepted_at;
