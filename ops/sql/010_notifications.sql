-- The Notifier's delivery records and webhook endpoints, as the Notifier issue needs them.

-- One row per (event, channel, recipient): the dedup key. A delivery is claimed for a
-- while before it is attempted (so two consumers never send the same one at once) and
-- marked sent after the server accepted it; a crash in between lets the claim expire
-- and the delivery be attempted again (at least once, never zero times).
ALTER TABLE notifications
    ADD COLUMN event_id      text,
    ADD COLUMN endpoint_id   uuid,
    ADD COLUMN claimed_until timestamptz,
    ADD COLUMN response_code integer,
    ADD COLUMN updated_at    timestamptz NOT NULL DEFAULT now();
CREATE INDEX notifications_tenant ON notifications (tenant_id, created_at DESC);
CREATE INDEX notifications_event ON notifications (event_id);

-- Endpoints: subscribed event types ('*' for all), an optional description, and the
-- previous secret, still signed with for a day after a rotation so receivers can switch.
ALTER TABLE webhook_endpoints
    ADD COLUMN description          text CHECK (length(description) <= 500),
    ADD COLUMN previous_secret      text,
    ADD COLUMN previous_secret_until timestamptz,
    ADD COLUMN updated_at           timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT webhook_endpoints_url_length CHECK (length(url) <= 2048);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id) WHERE active;
