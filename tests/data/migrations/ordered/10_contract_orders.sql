-- canary:allow drop-column reason: unused since v1.4
ALTER TABLE orders DROP COLUMN legacy_note;

DROP TABLE legacy_orders;
