-- What version 1.5 might naively ship. Each statement breaks version 1.4 (still
-- serving 95% of traffic during the canary) or locks the table; the lint blocks the
-- whole file before any of it reaches the database.

ALTER TABLE orders RENAME COLUMN total_cents TO amount_cents;  -- 1.4 still reads total_cents

ALTER TABLE orders ADD COLUMN status text NOT NULL;           -- 1.4's INSERTs have no status

ALTER TABLE orders ALTER COLUMN customer_id TYPE integer;     -- narrows 1.4's values, rewrites

CREATE INDEX orders_status_idx ON orders (status);            -- blocks writes while it builds

ALTER TABLE orders ADD CONSTRAINT orders_customer_fk
    FOREIGN KEY (customer_id) REFERENCES customers (id);      -- scans and locks every row

ALTER TABLE orders DROP COLUMN legacy_note;                   -- no opt-out: still in use
