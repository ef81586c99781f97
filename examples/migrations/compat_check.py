"""The compatibility check: version 1.4's own queries, run against the migrated schema.

During a canary the stable version keeps writing; if it cannot insert or read an order
after the migration, the rollout must stop before any traffic moves.
"""

from __future__ import annotations

import os
import random
import sys

import psycopg


def main() -> int:
    n = random.randint(10**6, 10**9)
    try:
        with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
            conn.execute("INSERT INTO customers (id, email) VALUES (%s, %s)", (n, f"c{n}@shop"))
            conn.execute("INSERT INTO orders (id, customer_id, total_cents) VALUES (%s, %s, 100)",
                         (n, n))
            rows = conn.execute("SELECT id, total_cents FROM orders WHERE customer_id = %s",
                                (n,)).fetchall()
            conn.rollback()  # leave no test rows behind
    except psycopg.Error as exc:
        print(f"version 1.4 broke against the new schema: {exc}".strip(), file=sys.stderr)
        return 1
    if rows != [(n, 100)]:
        print(f"version 1.4 read back {rows}", file=sys.stderr)
        return 1
    print("version 1.4's queries still work")
    return 0


if __name__ == "__main__":
    sys.exit(main())
