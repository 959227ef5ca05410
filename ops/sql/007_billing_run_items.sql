-- Billing runs: one item per (subscription, period) found due, so a run's progress and
-- counts are exact however many Invoicer processes work on it. The run is completed
-- when no item is pending. `skipped`: the period no longer exists when its command is
-- carried out (the subscription was canceled or changed after the run was planned).

CREATE TABLE billing_run_items (
    billing_run_id  uuid        NOT NULL REFERENCES billing_runs (id) ON DELETE CASCADE,
    subscription_id uuid        NOT NULL REFERENCES subscriptions (id),
    period_index    bigint      NOT NULL CHECK (period_index >= 0),
    period_start    timestamptz NOT NULL,
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'issued', 'skipped', 'failed')),
    invoice_id      uuid        REFERENCES invoices (id),
    error           text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (billing_run_id, subscription_id, period_index)
);
CREATE INDEX billing_run_items_pending ON billing_run_items (billing_run_id) WHERE status = 'pending';
