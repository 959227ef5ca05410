-- Invoices, exactly one per (subscription, period, kind), numbered gaplessly per year.

CREATE TABLE billing_runs (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    as_of           timestamptz NOT NULL,
    status          text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
    due_count       integer     NOT NULL DEFAULT 0,
    issued_count    integer     NOT NULL DEFAULT 0,
    failed_count    integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);

-- One row per year; incremented in the same transaction that inserts the invoice,
-- so numbers are gapless and unique however many Invoicer processes run.
CREATE TABLE invoice_number_counters (
    year            integer     PRIMARY KEY CHECK (year BETWEEN 2000 AND 9999),
    last_number     integer     NOT NULL DEFAULT 0 CHECK (last_number BETWEEN 0 AND 999999)
);

CREATE TABLE invoices (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid        NOT NULL REFERENCES tenants (id),
    subscription_id uuid        REFERENCES subscriptions (id),
    billing_run_id  uuid        REFERENCES billing_runs (id),
    kind            text        NOT NULL DEFAULT 'period' CHECK (kind IN ('period', 'adjustment')),
    number          text        NOT NULL UNIQUE CHECK (number ~ '^INV-[0-9]{4}-[0-9]{6}$'),
    status          text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'void', 'uncollectible')),
    currency        text        NOT NULL DEFAULT 'usd',
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    subtotal_cents  bigint      NOT NULL,
    tax_rate_bps    integer     NOT NULL,
    tax_cents       bigint      NOT NULL,
    total_cents     bigint      NOT NULL CHECK (total_cents = subtotal_cents + tax_cents),
    issued_at       timestamptz NOT NULL,
    as_of           timestamptz NOT NULL,
    paid_at         timestamptz,
    stripe_invoice_id text      UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (period_end > period_start),
    UNIQUE (subscription_id, period_start, kind)
);
CREATE INDEX invoices_tenant ON invoices (tenant_id, period_start);

CREATE TABLE invoice_lines (
    invoice_id      uuid        NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    position        integer     NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('base', 'overage', 'adjustment')),
    metric          text,
    description     text        NOT NULL,
    quantity        numeric(38,4) NOT NULL,
    -- Cents per unit; may be fractional (e.g. 0.5 cent per API call).
    unit_price_cents numeric(24,6) NOT NULL,
    amount_cents    bigint      NOT NULL,
    plan_slug       text,
    -- For adjustment lines: the earlier period whose late usage they bill.
    period_start    timestamptz,
    period_end      timestamptz,
    PRIMARY KEY (invoice_id, position)
);

-- What each invoice billed per metric and period: late-usage adjustments compare
-- the period's value with the late events against this snapshot.
CREATE TABLE billed_usage (
    subscription_id uuid        NOT NULL REFERENCES subscriptions (id),
    period_start    timestamptz NOT NULL,
    metric          text        NOT NULL,
    invoice_id      uuid        NOT NULL REFERENCES invoices (id),
    value           numeric(38,4) NOT NULL,
    amount_cents    bigint      NOT NULL,
    billed_at       timestamptz NOT NULL,
    PRIMARY KEY (subscription_id, period_start, metric, invoice_id)
);

-- Transactional outbox: rows written in the same transaction as the change they
-- announce, published after commit by a relay that marks them sent on confirm.
CREATE TABLE outbox (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    exchange        text        NOT NULL,
    routing_key     text        NOT NULL,
    message_id      text        NOT NULL UNIQUE,
    headers         jsonb       NOT NULL DEFAULT '{}',
    body            jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Stripe webhook events already received: a replayed event id is ignored.
CREATE TABLE stripe_webhook_events (
    event_id        text        PRIMARY KEY,
    type            text        NOT NULL,
    payload         jsonb       NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz
);
