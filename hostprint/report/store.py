"""Which inventory `--db` names: a PostgreSQL URL (report/inventory_pg.py, psycopg 3) or an SQLite
file (report/inventory.py, the default). Both have the same methods; commands open them here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hostprint.report import inventory, inventory_pg


def open_inventory(db: str | Path | None = None, *, create: bool = True) -> Any:
    if inventory_pg.is_url(db):
        return inventory_pg.PgInventory(str(db), create=create)
    return inventory.Inventory(db, create=create)


def check_inventory(db: str | Path | None = None) -> Path | str:
    """Can this run be recorded? Before the first packet, one line otherwise. SQLite: see
    inventory.check_inventory. PostgreSQL: the server answers, the schema is ours (created when the
    database is empty), this role may write it."""
    if inventory_pg.is_url(db):
        with inventory_pg.PgInventory(str(db)) as inv:
            inv.check_health(thorough=True)
            inv.check_writable()
            return inv.path
    return inventory.check_inventory(db)
