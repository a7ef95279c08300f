"""API keys and the audit log on PostGIS."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import CTE, Connection, Integer, column, text

from service.domain.access import ApiKey, AuditEntry, Role
from service.storage.postgis.rollups import DROP_EMPTIED, FOLD_LOCK, UNCOUNT_DELETED, OnCounted

_KEY_COLUMNS = "key_id, name, role, digest, created_at, expires_at, revoked_at"


def _key(row: Any) -> ApiKey:
    key_id, name, role, digest, created, expires, revoked = row
    return ApiKey(key_id, name, Role(role), bytes(digest), created, expires, revoked)


def add_key(conn: Connection, key: ApiKey) -> None:
    conn.exec_driver_sql(
        f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (key.key_id, key.name, key.role.value, key.digest, key.created_at, key.expires_at,
         key.revoked_at),
    )  # fmt: skip


def get_key(conn: Connection, key_id: str) -> ApiKey | None:
    row = conn.exec_driver_sql(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = %s", (key_id,)
    ).first()
    return None if row is None else _key(row)


def list_keys(conn: Connection) -> list[ApiKey]:
    rows = conn.exec_driver_sql(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at")
    return [_key(row) for row in rows]


def revoke_key(conn: Connection, key_id: str, at: datetime) -> bool:
    result = conn.exec_driver_sql(
        "UPDATE api_keys SET revoked_at = %s WHERE key_id = %s AND revoked_at IS NULL",
        (at, key_id),
    )
    return bool(result.rowcount)


# Every page an analyst reads writes an entry: its commit need not wait for the disk (a crash
# could lose the last fraction of a second of entries, never reorder or alter them). The setting
# is made by the INSERT itself (set_config, local to the transaction; read at commit), which saves
# a round trip of its own. A page of reports writes its entry from the page's own statement
# (pages.query_reports), with these parameters.
_AUDIT_INSERT = (
    "INSERT INTO audit_log (at, key_id, role, action, detail)"
    " SELECT CAST(:audit_at AS timestamptz), CAST(:audit_key_id AS text),"
    " CAST(:audit_role AS text), CAST(:audit_action AS text), CAST(:audit_detail AS jsonb)"
    " FROM set_config('synchronous_commit', 'off', true)"
)


def audit_cte() -> CTE:
    """The audit entry's INSERT as a data-modifying CTE, for a statement that writes the entry
    with its read (``Select.add_cte``); it binds audit_params."""
    returning = text(f"{_AUDIT_INSERT} RETURNING 1").columns(column("written", Integer))
    return returning.cte("audit")


def audit_params(entry: AuditEntry) -> dict[str, Any]:
    return {
        "audit_at": entry.at,
        "audit_key_id": entry.key_id,
        "audit_role": entry.role.value,
        "audit_action": entry.action,
        "audit_detail": orjson.dumps(entry.detail).decode(),
    }


def add_audit(conn: Connection, entry: AuditEntry) -> None:
    conn.execute(text(_AUDIT_INSERT), audit_params(entry))


def list_audit(conn: Connection, since: datetime | None, limit: int) -> list[AuditEntry]:
    rows = conn.exec_driver_sql(
        "SELECT at, key_id, role, action, detail FROM audit_log"
        " WHERE %(since)s::timestamptz IS NULL OR at >= %(since)s"
        " ORDER BY entry_no LIMIT %(limit)s",
        {"since": since, "limit": limit},
    )
    return [AuditEntry(at, key_id, Role(role), action, detail)
            for at, key_id, role, action, detail in rows]  # fmt: skip


def delete_report(conn: Connection, report_id: Any, on_counted: OnCounted | None = None) -> bool:
    """Delete a report and take it out of every rollup, in the caller's transaction; with
    ``on_counted``, its day and segment are told (surge detection) under the fold's lock."""
    if on_counted is not None:  # first: a fold takes it before the rollup rows, so must we
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(k)s)", {"k": FOLD_LOCK})
    row = conn.exec_driver_sql(UNCOUNT_DELETED, {"id": report_id}).first()
    if row is None:
        return False
    for statement in DROP_EMPTIED:
        conn.exec_driver_sql(statement)
    _, segment_id, kind, day = row
    if on_counted is not None and segment_id:
        on_counted(conn, {day: {(segment_id, kind)}})
    return True
