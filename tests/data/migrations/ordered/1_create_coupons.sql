-- A new table and its index: nothing to report.
CREATE TABLE coupons (
    code    text PRIMARY KEY,
    percent integer NOT NULL
);
CREATE INDEX coupons_percent_idx ON coupons (percent);
