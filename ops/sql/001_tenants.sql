-- Tenants (our customers' customers) and their API keys.
-- API keys are shown once and stored only as a SHA-256 digest: the keys are 256-bit
-- random values, so a fast digest is enough and a stolen table reveals nothing usable.

CREATE TABLE tenants (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    billing_email   text        NOT NULL CHECK (billing_email ~ '^[^@\s]+@[^@\s]+$'),
    tax_rate_bps    integer     NOT NULL DEFAULT 0 CHECK (tax_rate_bps BETWEEN 0 AND 10000),
    currency        text        NOT NULL DEFAULT 'usd' CHECK (currency ~ '^[a-z]{3}$'),
    stripe_customer_id text     UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The first characters of the key, kept to tell keys apart in listings.
    key_prefix      text        NOT NULL,
    key_sha256      bytea       NOT NULL UNIQUE CHECK (length(key_sha256) = 32),
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    last_used_at    timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Payment methods hold provider references only: never a card number or CVC.
CREATE TABLE payment_methods (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider        text        NOT NULL DEFAULT 'stripe' CHECK (provider IN ('stripe')),
    provider_id     text        NOT NULL UNIQUE,
    brand           text,
    last4           char(4)     CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month       smallint    CHECK (exp_month BETWEEN 1 AND 12),
    exp_year        smallint,
    is_default      boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX payment_methods_one_default ON payment_methods (tenant_id) WHERE is_default;
