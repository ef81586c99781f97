-- Version 1.5 needs a status, a coupon code and real constraints. Every step is
-- expand-only: version 1.4 keeps running while 1.5 takes its first 5% of traffic.

-- Nullable column: version 1.4's INSERTs simply leave it NULL.
ALTER TABLE orders ADD COLUMN coupon_code text;

-- NOT NULL is fine with a DEFAULT: existing rows and 1.4's INSERTs get 'placed'.
ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'placed';

-- Build the index without blocking 1.4's writes.
CREATE INDEX CONCURRENTLY orders_status_idx ON orders (status);

-- Foreign key in two steps: NOT VALID takes a short lock and checks new rows only;
-- VALIDATE scans the old rows without blocking writes.
ALTER TABLE orders
    ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id)
    REFERENCES customers (id) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fk;

-- Unique constraint in two steps: build the index concurrently, then attach it.
CREATE UNIQUE INDEX CONCURRENTLY customers_email_key ON customers (email);
ALTER TABLE customers ADD CONSTRAINT customers_email_unique UNIQUE USING INDEX customers_email_key;
