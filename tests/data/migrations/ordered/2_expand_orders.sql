ALTER TABLE orders ADD COLUMN coupon_code text;
CREATE INDEX orders_coupon_idx ON orders (coupon_code);
