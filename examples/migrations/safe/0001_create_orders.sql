-- The schema version 1.4 of the shop runs on (legacy_note is history: unused since
-- 1.2). New tables are free: no old code knows them and they hold no rows, so their
-- indexes need no CONCURRENTLY.
CREATE TABLE customers (
    id    bigint PRIMARY KEY,
    email text NOT NULL
);

CREATE TABLE orders (
    id          bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    total_cents integer NOT NULL,
    legacy_note text
);

CREATE INDEX orders_customer_id_idx ON orders (customer_id);
