"""Which rules of the migration lint (rules.py) one parsed statement breaks.

Unknown forms are never waved through: a statement sqlglot could only keep as an opaque
``Command``, or an ALTER action no rule knows, is reported as ``unrecognized-schema-change``
so a human looks at it (or opts out with a reason).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from sqlglot import exp

from canary.gate.rules import RULES, Hit

TableKey = tuple[str, str]  # (schema, table), folded as the database folds them


def table_key(table: exp.Table) -> TableKey:
    """Unquoted names are case-insensitive, quoted ones are not (``"Orders"`` is not
    ``orders``); schema is "" when unqualified."""
    def fold(part: object) -> str:
        if isinstance(part, exp.Identifier):
            return part.name if part.quoted else part.name.lower()
        return ""
    return (fold(table.args.get("db")), fold(table.this))


def created_table(stmt: exp.Expr) -> TableKey | None:
    """The table a CREATE TABLE statement makes; changes to it in the same file are free."""
    if isinstance(stmt, exp.Create) and str(stmt.args.get("kind", "")).upper() == "TABLE":
        target = stmt.this.this if isinstance(stmt.this, exp.Schema) else stmt.this
        if isinstance(target, exp.Table):
            return table_key(target)
    return None


def check(stmt: exp.Expr, *, sql: str, dialect: str,
          new_tables: set[TableKey]) -> list[Hit]:
    """The rules ``stmt`` breaks. ``new_tables`` were created earlier in the same file:
    no old version knows them and they hold no rows, so nothing done to them is checked."""
    hits = list(_check(stmt, sql=sql, dialect=dialect, new_tables=new_tables))
    return [h for h in hits if _applies(h.rule, dialect)]


def _applies(rule_id: str, dialect: str) -> bool:
    dialects = RULES[rule_id].dialects
    return dialects is None or dialect in dialects


def _check(stmt: exp.Expr, *, sql: str, dialect: str,
           new_tables: set[TableKey]) -> Iterator[Hit]:
    if isinstance(stmt, exp.Alter):
        if isinstance(stmt.this, exp.Table) and table_key(stmt.this) in new_tables:
            return
        yield from _check_alter(stmt, dialect=dialect)
    elif isinstance(stmt, exp.Drop):
        yield from _check_drop(stmt, new_tables=new_tables)
    elif isinstance(stmt, exp.Create) and str(stmt.args.get("kind", "")).upper() == "INDEX":
        yield from _check_create_index(stmt, dialect=dialect, new_tables=new_tables)
    elif isinstance(stmt, exp.Command):
        yield from _check_command(stmt, sql=sql)
    elif isinstance(stmt, exp.Condition | exp.Alias):
        # sqlglot reads an unknown leading word as a column or alias: not a statement.
        yield Hit("unparsable-statement", f"cannot parse ({sql.split()[0]!r} starts no "
                  "statement canary knows)")


_DROPPED_RELATIONS = {"TABLE", "VIEW", "SCHEMA", "DATABASE"}


def _check_drop(stmt: exp.Drop, *, new_tables: set[TableKey]) -> Iterator[Hit]:
    kind = str(stmt.args.get("kind", "")).upper()
    if kind not in _DROPPED_RELATIONS:
        return  # indexes, constraints, triggers: dropping them does not break old reads
    for table in stmt.args.get("tables") or []:
        if isinstance(table, exp.Table) and table_key(table) not in new_tables:
            name = table.sql() if kind in ("TABLE", "VIEW") else (table.db or table.name)
            label = "materialized view" if stmt.args.get("materialized") else kind.lower()
            yield Hit("drop-table", f"{label} {name}")


def _check_create_index(stmt: exp.Create, *, dialect: str,
                        new_tables: set[TableKey]) -> Iterator[Hit]:
    index = stmt.this
    table = index.args.get("table") if isinstance(index, exp.Index) else None
    if isinstance(table, exp.Table) and table_key(table) in new_tables:
        return
    name = index.name if isinstance(index, exp.Index) else "?"
    where = f"index {name} on {table.sql() if isinstance(table, exp.Table) else '?'}"
    concurrently = bool(stmt.args.get("concurrently"))
    if stmt.args.get("unique") and not (dialect == "postgres" and concurrently):
        # A unique index is a unique constraint in all but name; its rule subsumes the lock.
        yield Hit("add-unique-constraint", f"unique {where}")
    elif not concurrently:
        yield Hit("create-index-without-concurrently", where)


def _check_alter(stmt: exp.Alter, *, dialect: str) -> Iterator[Hit]:
    kind = str(stmt.args.get("kind", "")).upper()
    table = stmt.this.sql() if isinstance(stmt.this, exp.Expression) else "?"
    not_valid = bool(stmt.args.get("not_valid")) and dialect == "postgres"
    for action in stmt.args.get("actions") or []:
        if kind != "TABLE":
            if isinstance(action, exp.AlterRename):
                if kind == "VIEW":
                    yield Hit("rename-table", f"view {table}")
                continue  # renaming an index or sequence is invisible to queries
            yield Hit("unrecognized-schema-change", f"ALTER {kind} {table}")
            continue
        yield from _check_action(action, table=table, dialect=dialect, not_valid=not_valid)


def _check_action(action: exp.Expression, *, table: str, dialect: str,
                  not_valid: bool) -> Iterator[Hit]:
    if isinstance(action, exp.ColumnDef):
        yield from _check_add_column(action, table=table)
    elif isinstance(action, exp.AddConstraint):
        for constraint in action.expressions:
            kinds = constraint.expressions if isinstance(constraint, exp.Constraint) else [
                constraint]
            for c in kinds:
                yield from _check_constraint(c, table=table, not_valid=not_valid)
    elif isinstance(action, exp.Drop):
        kind = str(action.args.get("kind", "")).upper()
        if kind == "COLUMN":
            for col in action.args.get("tables") or []:
                yield Hit("drop-column", f"column {table}.{col.name}")
        elif kind not in ("CONSTRAINT", "INDEX", "FOREIGN KEY", "KEY"):
            yield Hit("unrecognized-schema-change", f"DROP {kind} on {table}")
    elif isinstance(action, exp.DropPrimaryKey | exp.RenameIndex):
        return  # relaxing or renaming an index does not break the old version's queries
    elif isinstance(action, exp.RenameColumn):
        yield Hit("rename-column", f"column {table}.{action.this.name} to {action.args['to'].name}")
    elif isinstance(action, exp.AlterRename):
        yield Hit("rename-table", f"table {table} to {action.this.sql()}")
    elif isinstance(action, exp.AlterColumn):
        yield from _check_alter_column(action, table=table, dialect=dialect)
    elif isinstance(action, exp.ModifyColumn):
        yield from _check_modify_column(action, table=table)
    else:
        yield Hit("unrecognized-schema-change", f"{type(action).__name__} on {table}")


def _check_alter_column(action: exp.AlterColumn, *, table: str,
                        dialect: str) -> Iterator[Hit]:
    column = f"{table}.{action.name}"
    args = {k for k, v in action.args.items() if v not in (None, False) and k != "this"}
    dtype = action.args.get("dtype")
    if isinstance(dtype, exp.Expression):
        yield Hit("change-column-type", f"column {column} to {dtype.sql(dialect=dialect)}")
    elif action.args.get("allow_null") is False:
        yield Hit("add-not-null-without-default", f"SET NOT NULL on {column}")
    elif args <= {"default", "drop", "allow_null", "exists"}:
        return  # SET/DROP DEFAULT, DROP NOT NULL: the old version's writes still work
    else:
        yield Hit("unrecognized-schema-change", f"ALTER COLUMN {column}")


def _check_modify_column(action: exp.ModifyColumn, *, table: str) -> Iterator[Hit]:
    """MySQL CHANGE/MODIFY restate the whole definition; the old one is not in the file."""
    coldef = action.this
    new = coldef.name if isinstance(coldef, exp.ColumnDef) else "?"
    old = action.args.get("rename_from")
    if isinstance(old, exp.Expression) and old.name.lower() != new.lower():
        yield Hit("rename-column", f"column {table}.{old.name} to {new}")
    yield Hit("change-column-type", f"column {table}.{new} (redefined; old type unknown)")


def _check_add_column(coldef: exp.ColumnDef, *, table: str) -> Iterator[Hit]:
    column = f"{table}.{coldef.name}"
    kinds = [c.args.get("kind") for c in coldef.args.get("constraints") or []]
    dtype = coldef.args.get("kind")
    default = any(isinstance(k, exp.DefaultColumnConstraint) and not isinstance(k.this, exp.Null)
                  for k in kinds)
    generated = (isinstance(dtype, exp.DataType) and "SERIAL" in dtype.this.name) or any(
        isinstance(k, exp.GeneratedAsIdentityColumnConstraint | exp.ComputedColumnConstraint
                   | exp.AutoIncrementColumnConstraint) for k in kinds)
    primary = any(isinstance(k, exp.PrimaryKeyColumnConstraint) for k in kinds)
    not_null = primary or any(isinstance(k, exp.NotNullColumnConstraint)
                              and not k.args.get("allow_null") for k in kinds)
    if not_null and not (default or generated):
        yield Hit("add-not-null-without-default", f"new column {column}")
    if not default:
        return  # every existing row holds NULL (or a fresh generated value): nothing to check
    if primary or any(isinstance(k, exp.UniqueColumnConstraint) for k in kinds):
        yield Hit("add-unique-constraint", f"new column {column} (every row gets the default)")
    if any(isinstance(k, exp.Reference) for k in kinds):
        yield Hit("add-foreign-key", f"new column {column} (every row gets the default)")
    if any(isinstance(k, exp.CheckColumnConstraint) for k in kinds):
        yield Hit("add-check-constraint", f"new column {column} (every row gets the default)")


def _check_constraint(c: exp.Expression, *, table: str, not_valid: bool) -> Iterator[Hit]:
    if isinstance(c, exp.UniqueColumnConstraint | exp.PrimaryKey
                  | exp.PrimaryKeyColumnConstraint):
        yield Hit("add-unique-constraint", f"{_constraint_label(c)} on {table}")
    elif isinstance(c, exp.ForeignKey | exp.Reference):
        if not not_valid:
            yield Hit("add-foreign-key", f"foreign key on {table}")
    elif isinstance(c, exp.CheckColumnConstraint):
        if not not_valid:
            yield Hit("add-check-constraint", f"check constraint on {table}")
    elif isinstance(c, exp.IndexColumnConstraint):
        return  # MySQL ADD INDEX: an ordinary index, built online by InnoDB
    else:
        yield Hit("unrecognized-schema-change", f"ADD {type(c).__name__} on {table}")


def _constraint_label(c: exp.Expression) -> str:
    return "unique constraint" if isinstance(c, exp.UniqueColumnConstraint) else "primary key"


# Opaque commands (sqlglot's fallback) are matched on their normalised text. The safe
# forms are the ones our own fixes recommend; everything else that alters, renames or
# drops is unknown and reported.
_SAFE_COMMANDS = [re.compile(p, re.IGNORECASE) for p in (
    r"^ALTER TABLE (IF EXISTS )?(ONLY )?\S+ VALIDATE CONSTRAINT \S+$",
    r"^ALTER TABLE (IF EXISTS )?(ONLY )?\S+ ADD CONSTRAINT \S+ (UNIQUE|PRIMARY KEY) "
    r"USING INDEX \S+( DEFERRABLE.*)?$",
    r"^ALTER TABLE (IF EXISTS )?(ONLY )?\S+ RENAME CONSTRAINT \S+ TO \S+$",
    r"^ALTER TABLE (IF EXISTS )?(ONLY )?\S+ OWNER TO \S+$",
    r"^ALTER TABLE (IF EXISTS )?(ONLY )?\S+ ALTER (COLUMN )?\S+ SET STATISTICS \S+$",
    r"^ALTER TYPE \S+ ADD VALUE .*$",
)]
_RENAMES = [re.compile(p, re.IGNORECASE) for p in (
    r"^RENAME TABLE (?P<what>.+)$",  # MySQL
    r"^ALTER TABLE (IF EXISTS )?(ONLY )?(?P<what>\S+ SET SCHEMA \S+)$",  # PostgreSQL
)]
_RISKY_VERBS = {"ALTER", "RENAME", "DROP", "DO", "TRUNCATE"}


def _check_command(stmt: exp.Command, *, sql: str) -> Iterator[Hit]:
    text = " ".join(sql.split()).rstrip(";").strip()
    verb = str(stmt.this).upper()
    if verb not in _RISKY_VERBS or any(p.match(text) for p in _SAFE_COMMANDS):
        return
    for p in _RENAMES:
        m = p.match(text)
        if m:
            yield Hit("rename-table", f"table {m.group('what')}")
            return
    if verb == "DO":
        yield Hit("unrecognized-schema-change", "DO block (canary cannot see inside it)")
        return
    yield Hit("unrecognized-schema-change", text[:60] + ("..." if len(text) > 60 else ""))
