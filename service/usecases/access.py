"""Keys, the audit log, and deleting a report: what an admin does (over HTTP or the CLI)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from service.domain.access import KEY_ROLES, ApiKey, AuditEntry, Caller, Role, new_token
from service.domain.errors import FieldError, InvalidInput, KeyNotFound, ReportNotFound
from service.storage.base import AccessStore, ReportStore


def audit_entry(caller: Caller, action: str, detail: dict[str, Any]) -> AuditEntry:
    """An audit entry: who (key id and role; no key for the command line), what, when (now)."""
    return AuditEntry(datetime.now(UTC), caller.key_id, caller.role, action, detail)


def record(store: AccessStore, caller: Caller, action: str, detail: dict[str, Any]) -> None:
    """Write one audit entry (audit_entry)."""
    store.add_audit(audit_entry(caller, action, detail))


def create_key(
    store: AccessStore,
    *,
    role: str,
    name: str,
    expires_at: datetime | None,
    actor: Caller,
) -> tuple[ApiKey, str]:
    """A new key and the token to hand out (shown once; only its digest is kept)."""
    errors = []
    if role not in {r.value for r in KEY_ROLES}:
        errors.append(
            FieldError("role", f"must be one of: {', '.join(r.value for r in KEY_ROLES)}")
        )
    if not name.strip() or len(name) > 200:
        errors.append(FieldError("name", "must be 1 to 200 characters"))
    now = datetime.now(UTC)
    if expires_at is not None and (expires_at.utcoffset() is None or expires_at <= now):
        errors.append(FieldError("expires_at", "must be a future instant with its UTC offset"))
    if errors:
        raise InvalidInput("the key cannot be made", errors=errors)
    key_id, token, digest = new_token()
    key = ApiKey(key_id, name.strip(), Role(role), digest, now, expires_at)
    store.add_key(key)
    record(store, actor, "key.create", {"key_id": key_id, "name": key.name, "role": role})
    return key, token


def revoke_key(store: AccessStore, key_id: str, *, actor: Caller) -> None:
    if not store.revoke_key(key_id, datetime.now(UTC)):
        raise KeyNotFound(f"no usable key {key_id!r}")
    record(store, actor, "key.revoke", {"key_id": key_id})


def delete_report(store: Any, report_id: UUID, *, actor: Caller) -> None:
    """Delete a report (admin); the rollups are counted down in the same transaction."""
    typed: ReportStore = store
    if not typed.delete_report(report_id):
        raise ReportNotFound(f"no report {report_id}")
    record(store, actor, "report.delete", {"report_id": str(report_id)})


def key_fields(key: ApiKey) -> dict[str, Any]:
    """A key as listed: never its digest."""
    return {
        "key_id": key.key_id,
        "name": key.name,
        "role": key.role.value,
        "created_at": key.created_at.isoformat(),
        "expires_at": None if key.expires_at is None else key.expires_at.isoformat(),
        "revoked_at": None if key.revoked_at is None else key.revoked_at.isoformat(),
    }
