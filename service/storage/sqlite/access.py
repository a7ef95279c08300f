"""API keys and the audit log on SQLite (times as integer microseconds since the epoch)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from service.domain.access import ApiKey, AuditEntry, Role
from service.storage.sqlite.rows import from_micros, to_micros

_KEY_COLUMNS = "key_id, name, role, digest, created_at, expires_at, revoked_at"


def _maybe(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


def _key(row: Any) -> ApiKey:
    key_id, name, role, digest, created, expires, revoked = row
    return ApiKey(
        key_id, name, Role(role), bytes(digest), from_micros(created), _maybe(expires),
        _maybe(revoked),
    )  # fmt: skip


def add_key(conn: sqlite3.Connection, key: ApiKey) -> None:
    conn.execute(
        f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (key.key_id, key.name, key.role.value, key.digest, to_micros(key.created_at),
         None if key.expires_at is None else to_micros(key.expires_at),
         None if key.revoked_at is None else to_micros(key.revoked_at)),
    )  # fmt: skip


def get_key(conn: sqlite3.Connection, key_id: str) -> ApiKey | None:
    row = conn.execute(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,)
    ).fetchone()
    return None if row is None else _key(row)


def list_keys(conn: sqlite3.Connection) -> list[ApiKey]:
    rows = conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at")
    return [_key(row) for row in rows]


def revoke_key(conn: sqlite3.Connection, key_id: str, at: datetime) -> bool:
    cursor = conn.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
        (to_micros(at), key_id),
    )
    return cursor.rowcount > 0


def add_audit(conn: sqlite3.Connection, entry: AuditEntry) -> None:
    conn.execute(
        "INSERT INTO audit_log (at, key_id, role, action, detail) VALUES (?, ?, ?, ?, ?)",
        (to_micros(entry.at), entry.key_id, entry.role.value, entry.action,
         json.dumps(entry.detail)),
    )  # fmt: skip


def list_audit(conn: sqlite3.Connection, since: datetime | None, limit: int) -> list[AuditEntry]:
    rows = conn.execute(
        "SELECT at, key_id, role, action, detail FROM audit_log"
        " WHERE ? IS NULL OR at >= ? ORDER BY entry_no LIMIT ?",
        (None if since is None else to_micros(since),) * 2 + (limit,),
    )
    return [
        AuditEntry(from_micros(at), key_id, Role(role), action, json.loads(detail))
        for at, key_id, role, action, detail in rows
    ]
