"""Who may do what: roles, what each may reach, and API keys (made, parsed and checked here;
only a key's digest is ever stored).

A key reads ``crs_<key_id>_<secret>``: the id finds the stored record, the secret (32 random bytes)
is checked against its SHA-256 digest in constant time. A high-entropy secret needs no slow hash:
there is nothing to guess, and a leaked digest gives no key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    PUBLIC = "public"  # no key
    REPORTER = "reporter"  # the field app: posts and snaps, reads back its own reports
    ANALYST = "analyst"  # reads everything, precise and unsuppressed, exports
    ADMIN = "admin"  # and manages keys, the border, deletions


class Permission(StrEnum):
    PUBLIC = "public"  # segments, suppressed aggregates, public-safe tiles, docs
    SUBMIT = "submit"  # post reports, snap points
    READ_OWN = "read_own"  # read reports: a reporter only its own
    READ_ALL = "read_all"  # read every report, precise
    ADMIN = "admin"  # keys, segment loading, deletions, the audit log
    METRICS = "metrics"  # /metrics: an admin key, or a keyless scraper from CROSSINGS_METRICS_ALLOW


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.PUBLIC: frozenset({Permission.PUBLIC}),
    Role.REPORTER: frozenset({Permission.PUBLIC, Permission.SUBMIT, Permission.READ_OWN}),
    Role.ANALYST: frozenset({Permission.PUBLIC, Permission.READ_OWN, Permission.READ_ALL}),
    Role.ADMIN: frozenset(Permission),
}
KEY_ROLES = (Role.REPORTER, Role.ANALYST, Role.ADMIN)  # what a key can be made for


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a role, and the key (its id and name) when one was sent."""

    role: Role = Role.PUBLIC
    key_id: str | None = None
    key_name: str | None = None

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    @property
    def sees_everything(self) -> bool:
        """Precise positions, notes, device ids and unsuppressed figures."""
        return self.may(Permission.READ_ALL)

    @property
    def posted_by(self) -> str | None:
        """The key whose reports this caller may read, when limited to its own; None: any."""
        return None if self.sees_everything else self.key_id


PUBLIC = Caller()


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    name: str
    role: Role
    digest: bytes
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable_at(self, moment: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or moment < self.expires_at)


_TOKEN = re.compile(r"^crs_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def new_token() -> tuple[str, str, bytes]:
    """A fresh key: (key_id, the token to hand out once, the digest to store)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return key_id, f"crs_{key_id}_{secret}", digest_of(secret)


def digest_of(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed token, else None."""
    match = _TOKEN.match(token.strip())
    return None if match is None else (match.group(1), match.group(2))


def matches(key: ApiKey, secret: str) -> bool:
    """Whether ``secret`` is this key's, compared in constant time."""
    return hmac.compare_digest(key.digest, digest_of(secret))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited act: key creation or revocation, a deletion, a border load, an export of
    precise data. ``detail`` says what (the query, the id); never a key's secret."""

    at: datetime
    key_id: str | None
    role: Role
    action: str
    detail: dict[str, object]
