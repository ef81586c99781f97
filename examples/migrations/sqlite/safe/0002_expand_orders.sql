-- Expand only: version 1.4 keeps inserting without these columns.
ALTER TABLE orders ADD COLUMN coupon_code TEXT;
ALTER TABLE orders ADD COLUMN status TEXT NOT NULL DEFAULT 'placed';
CREATE TABLE order_notes (order_id INTEGER NOT NULL, note TEXT NOT NULL);
