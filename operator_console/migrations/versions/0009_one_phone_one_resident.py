"""one phone, one resident: a unique index on resident_phone.number

Until now a number could be stored on several residents (the import never checked, the
API let an operator tick "shared phone"), and a call from it greeted whichever resident
the lookup happened to pick, whose address keypad orders then went to.

A database that already holds such numbers is not refused: a hotline that does not start
because of a data problem helps nobody, and the people who depend on it least of all.
Each shared number stays with ONE resident and is taken off the others:

* the first resident who is still registered or suspended to have been given it (the
  lowest `resident_phone.id`) keeps it: the earlier registration is the likelier true
  owner (an impostor row or a typo comes later), and a resident who moved out or died
  never keeps a line a living resident now uses;
* if every holder moved out or died, the first holder keeps it.

Every resident who loses a number gets a `resident.updated` event (changed: phones,
reason, the masked number and `kept_by`, the resident id that kept it), and the ids are
logged as warnings, so an admin can call those residents and register the right number.
Their search revision moves so every search index picks the change up.

The redundant (number, resident_id) unique constraint and the plain index on number go:
the unique index on number covers both.

Revision ID: 0009_one_phone_one_resident
Revises: 0008_flow_keys
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import eventlog.db

revision = "0009_one_phone_one_resident"
down_revision = "0008_flow_keys"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
ACTIVE = ("registered", "suspended")
REASON = "one_phone_one_resident"


def _mask(number: str) -> str:
    return number[:6] + "****" + number[-4:] if len(number) > 8 else "*" * len(number)


def _one_holder_each() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT p.id, p.number, p.resident_id, r.status FROM resident_phone p "
            "JOIN resident r ON r.id = p.resident_id WHERE p.number IN "
            "(SELECT number FROM resident_phone GROUP BY number HAVING COUNT(*) > 1) "
            "ORDER BY p.number, p.id"
        )
    ).all()
    by_number: dict[str, list[tuple[int, int, str]]] = {}
    for phone_id, number, resident_id, status in rows:
        by_number.setdefault(number, []).append((int(phone_id), int(resident_id), str(status)))
    lost: list[tuple[int, int, str, int]] = []  # phone id, resident id, number, kept by
    for number, holders in by_number.items():
        keeper = next((h for h in holders if h[2] in ACTIVE), holders[0])
        lost += [(h[0], h[1], number, keeper[1]) for h in holders if h is not keeper]
    if not lost:
        return
    phone = sa.table("resident_phone", sa.column("id"))
    conn.execute(phone.delete().where(phone.c.id.in_([p for p, _, _, _ in lost])))
    now = datetime.now(UTC)
    event = sa.table(
        "event",
        sa.column("name", sa.String),
        sa.column("subject", sa.String),
        sa.column("subject_id", sa.String),
        sa.column("occurred_at", eventlog.db.UTCDateTime(timezone=True)),
        sa.column("actor", sa.String),
        sa.column("data", eventlog.db.JSONType),
    )
    conn.execute(
        event.insert(),
        [
            {
                "name": "resident.updated",
                "subject": "resident",
                "subject_id": str(resident_id),
                "occurred_at": now,
                "actor": "migration:0009",
                "data": {
                    "changed": ["phones"],
                    "reason": REASON,
                    "number": _mask(number),
                    "kept_by": kept_by,
                },
            }
            for _, resident_id, number, kept_by in lost
        ],
    )
    losers = sorted({resident_id for _, resident_id, _, _ in lost})
    bumped = conn.execute(
        sa.text(
            "UPDATE registry_revision SET value = value + 1 WHERE key = 'resident' "
            "RETURNING value"
        )
    ).scalar()
    if bumped is not None:
        resident = sa.table("resident", sa.column("id"), sa.column("revision"))
        conn.execute(
            resident.update().where(resident.c.id.in_(losers)).values(revision=int(bumped))
        )
    for _, resident_id, _, kept_by in lost:
        log.warning(
            "0009: a phone number of resident %s was taken off (resident %s keeps it); "
            "check the resident's phones",
            resident_id,
            kept_by,
        )
    log.warning("0009: %d numbers were shared; %d residents lost one", len(by_number), len(losers))


def upgrade() -> None:
    _one_holder_each()
    # 0001 left the (number, resident_id) constraint unnamed: PostgreSQL named it, SQLite
    # did not; the naming convention gives SQLite's a name batch mode can drop
    unnamed = "uq_resident_phone_number"
    pairs = [
        u["name"] or unnamed
        for u in sa.inspect(op.get_bind()).get_unique_constraints("resident_phone")
        if sorted(u["column_names"]) == ["number", "resident_id"]
    ]
    with op.batch_alter_table(
        "resident_phone",
        schema=None,
        naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"},
    ) as batch_op:
        batch_op.drop_index("ix_resident_phone_number")
        for name in pairs:
            batch_op.drop_constraint(name, type_="unique")
        batch_op.create_index("ux_resident_phone_number", ["number"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("resident_phone", schema=None) as batch_op:
        batch_op.drop_index("ux_resident_phone_number")
        batch_op.create_index("ix_resident_phone_number", ["number"], unique=False)
        batch_op.create_unique_constraint(
            "resident_phone_number_resident_id_key", ["number", "resident_id"]
        )
