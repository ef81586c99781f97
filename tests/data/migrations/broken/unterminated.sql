ALTER TABLE orders ADD COLUMN note text;
INSERT INTO orders (note) VALUES ('never closed);
