-- Invoice listings page newest period first across tenants (the admin's
-- GET /v1/invoices): a keyset on (period_start, number) reads one page, not a sort of all.
CREATE INDEX invoices_listing ON invoices (period_start DESC, number DESC);
