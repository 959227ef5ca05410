-- Dashboard sign-ins (issue 14). The browser holds a random session token in an
-- HttpOnly, SameSite=Strict cookie; only its SHA-256 is stored, as for API keys.
-- A tenant session names the key it signed in with and ends when that key is
-- revoked; an admin session keeps the digest of the admin token it signed in with
-- and ends when the operator changes the token. Signing out ends it for good.
CREATE TABLE dashboard_sessions (
    token_sha256        bytea       PRIMARY KEY CHECK (length(token_sha256) = 32),
    tenant_id           uuid        REFERENCES tenants (id) ON DELETE CASCADE,
    api_key_id          uuid        REFERENCES api_keys (id) ON DELETE CASCADE,
    admin_token_sha256  bytea       CHECK (admin_token_sha256 IS NULL OR length(admin_token_sha256) = 32),
    -- Every form of the session carries this token (CSRF).
    csrf_token          text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    signed_out_at       timestamptz,
    CHECK ((tenant_id IS NOT NULL AND api_key_id IS NOT NULL AND admin_token_sha256 IS NULL)
        OR (tenant_id IS NULL AND api_key_id IS NULL AND admin_token_sha256 IS NOT NULL))
);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);
