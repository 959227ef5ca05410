-- Who an invoice was billed to, as it was when the invoice was issued: a tenant's name and
-- billing email can change (PATCH /v1/tenants), and an issued invoice never does (SPEC §2
-- rule 6), so its PDF keeps the name and address it was sent with. Invoices issued before
-- this migration were issued to the tenant as it still is (neither could change then).
ALTER TABLE invoices
    ADD COLUMN customer_name  text,
    ADD COLUMN customer_email text;

UPDATE invoices i SET customer_name = t.name, customer_email = t.billing_email
  FROM tenants t WHERE t.id = i.tenant_id AND i.customer_name IS NULL;
