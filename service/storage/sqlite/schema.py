"""The SQLite schema as an ordered list of migration steps, versioned by ``PRAGMA user_version``.

A file at version N has had steps 1..N applied. Opening a file applies the missing steps in one
write transaction, so an upgraded package upgrades an existing file safely, and a crash halfway
leaves it at its old version. Never edit a released step: append a new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from service.domain.errors import StoreUnavailable

MigrationStep = Callable[[sqlite3.Connection], None]


class SchemaTooNew(StoreUnavailable):
    """The file was written by a newer version of the service than this one."""


def sql_step(*sql: str) -> MigrationStep:
    """A step that runs each statement in turn (``executescript`` would commit on its own)."""

    def step(conn: sqlite3.Connection) -> None:
        for statement in sql:
            conn.execute(statement)

    return step


_V1_SEGMENTS_AND_REPORTS = sql_step(
    """
    CREATE TABLE segments (
        segment_id    TEXT PRIMARY KEY,
        load_order    INTEGER NOT NULL UNIQUE,
        border        TEXT NOT NULL,
        section       TEXT NOT NULL,
        start_km      REAL NOT NULL,
        end_km        REAL NOT NULL,
        left_country  TEXT NOT NULL,
        right_country TEXT NOT NULL,
        properties    TEXT NOT NULL,  -- JSON object, exactly as loaded
        coords        TEXT NOT NULL   -- JSON [[lon, lat], ...]
    )
    """,
    # row_no is the rowid the R*Tree points at; id is the public key. Times are integer
    # microseconds since the epoch, UTC: exact, and they sort as the instants do.
    """
    CREATE TABLE reports (
        row_no          INTEGER PRIMARY KEY,
        id              TEXT NOT NULL UNIQUE,  -- canonical lowercase UUID: sorts as the UUID does
        observed_at     INTEGER NOT NULL,
        received_at     INTEGER NOT NULL,
        lon             REAL NOT NULL,
        lat             REAL NOT NULL,
        people_count    INTEGER NOT NULL,
        kind            TEXT NOT NULL,
        direction       TEXT,
        accuracy_m      REAL,
        notes           TEXT,
        device_id       TEXT,
        content_hash    BLOB NOT NULL,
        snap_status     TEXT NOT NULL,
        segment_id      TEXT,  -- no foreign key: reports outlive a reload of the segment set
        snap_distance_m REAL,
        snap_lon        REAL,
        snap_lat        REAL,
        chainage_km     REAL,
        side            TEXT
    )
    """,
    "CREATE INDEX reports_by_time ON reports (observed_at, id)",
    "CREATE INDEX reports_by_segment ON reports (segment_id, observed_at, id)",
    """
    CREATE VIRTUAL TABLE reports_rtree USING rtree (
        row_no, min_lon, max_lon, min_lat, max_lat
    )
    """,
)

# Reports and people per UTC day / month and (segment_id, side, kind, direction), '' for none;
# periods as integer microseconds since the epoch, like observed_at. Kept by ingest (reports.py).
_V2_COUNT_ROLLUPS = sql_step(
    *(
        f"""
        CREATE TABLE {table} (
            segment_id TEXT NOT NULL,
            period     INTEGER NOT NULL,
            side       TEXT NOT NULL,
            kind       TEXT NOT NULL,
            direction  TEXT NOT NULL,
            reports    INTEGER NOT NULL,
            people     INTEGER NOT NULL,
            PRIMARY KEY (segment_id, period, side, kind, direction)
        ) WITHOUT ROWID
        """
        for table in ("count_days", "count_months")
    ),
    *(
        f"""
        INSERT INTO {table} (segment_id, period, side, kind, direction, reports, people)
        SELECT coalesce(segment_id, ''), {period}, coalesce(side, ''), kind,
               coalesce(direction, ''), count(*), sum(people_count)
        FROM reports
        GROUP BY 1, 2, 3, 4, 5
        """
        for table, period in (
            ("count_days", "observed_at - observed_at % 86400000000"),
            (
                "count_months",
                "CAST(strftime('%s', strftime('%Y-%m-01', observed_at / 1000000, 'unixepoch'))"
                " AS INTEGER) * 1000000",
            ),
        )
    ),
)

# Access control: API keys (digests only), the audit log, and the key each report came in with.
_V3_ACCESS = sql_step(
    """
    CREATE TABLE api_keys (
        key_id     TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        role       TEXT NOT NULL,
        digest     BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER
    )
    """,
    """
    CREATE TABLE audit_log (
        entry_no INTEGER PRIMARY KEY,
        at       INTEGER NOT NULL,
        key_id   TEXT,
        role     TEXT NOT NULL,
        action   TEXT NOT NULL,
        detail   TEXT NOT NULL
    )
    """,
    "CREATE INDEX audit_log_at ON audit_log (at)",
    "ALTER TABLE reports ADD COLUMN key_id TEXT",
    "CREATE INDEX reports_by_key ON reports (key_id, observed_at) WHERE key_id IS NOT NULL",
)

# Retention: reports whose precise fields were purged (service/storage/sqlite/retention.py), and
# an index of those not purged yet, so each purge reads only the reports it purges.
_V4_RETENTION = sql_step(
    "ALTER TABLE reports ADD COLUMN purged INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX reports_unpurged ON reports (observed_at) WHERE purged = 0",
)

# The border's version, raised by every change of the segment set (as PostGIS migration 0009):
# a running server learns of a border loaded by another process, and ingest refuses to store a
# report snapped to a border that is no longer the stored one.
_V5_BORDER_VERSION = sql_step(
    "CREATE TABLE border_version (only_row INTEGER PRIMARY KEY CHECK (only_row = 1),"
    " version INTEGER NOT NULL)",
    "INSERT INTO border_version (only_row, version) VALUES (1, 1)",
)

# The public release (as PostGIS migration 0011): exact counts per UTC day (days since the epoch),
# segment, kind, direction and side; one current cut, replaced whole in one transaction.
_V6_PUBLIC_RELEASE = sql_step(
    "CREATE TABLE release_info (only_row INTEGER PRIMARY KEY CHECK (only_row = 1),"
    " release_id INTEGER NOT NULL, cut_at INTEGER NOT NULL, through INTEGER NOT NULL,"
    " first_day INTEGER)",
    "CREATE TABLE release_cells (day INTEGER NOT NULL, segment_id TEXT, kind TEXT NOT NULL,"
    " direction TEXT, side TEXT, reports INTEGER NOT NULL, people INTEGER NOT NULL)",
)

# Alerts and webhook deliveries (as PostGIS migration 0013): days as ISO text (they sort as the
# days do), times as integer microseconds, the filter and secrets as JSON text, the payload as the
# exact body sent and signed.
_V7_ALERTS_AND_WEBHOOKS = sql_step(
    "CREATE TABLE alerts (id TEXT PRIMARY KEY, state TEXT NOT NULL, border TEXT NOT NULL,"
    " section TEXT, segment_id TEXT, kind TEXT, measure TEXT NOT NULL,"
    " opened_day TEXT NOT NULL, last_day TEXT NOT NULL, closed_day TEXT, days INTEGER NOT NULL,"
    " observed REAL NOT NULL, expected REAL NOT NULL, statistic REAL NOT NULL,"
    " peak_statistic REAL NOT NULL, raised_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    " version INTEGER NOT NULL)",
    "CREATE INDEX alerts_updated ON alerts (updated_at DESC, id DESC)",
    "CREATE TABLE webhooks (id TEXT PRIMARY KEY, url TEXT NOT NULL,"
    " description TEXT NOT NULL DEFAULT '', filter TEXT NOT NULL, secrets TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, disabled_at INTEGER, disabled_reason TEXT)",
    "CREATE TABLE webhook_deliveries (id TEXT PRIMARY KEY,"
    " webhook_id TEXT NOT NULL REFERENCES webhooks (id), event_type TEXT NOT NULL,"
    " payload TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt_at INTEGER NOT NULL, last_status INTEGER, last_error TEXT,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, delivered_at INTEGER)",
    "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)"
    " WHERE state = 'pending'",
    "CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at)",
)

# Surge detection's state per watched series (issue #19; PostGIS migration 0014). Since PostGIS's
# 0018 the state is packed bytes (series.state_to_bytes), kept as a BLOB in this TEXT column
# (SQLite keeps a BLOB as it is whatever the column's type): no step of its own; the JSON text
# written before is still read.
_V8_SURGE_SERIES = sql_step(
    "CREATE TABLE surge_series (series TEXT PRIMARY KEY, state TEXT NOT NULL,"
    " updated_at INTEGER NOT NULL)"
)

# Links between reports of one crossing by different monitors, and each linked report's group
# (issue #20, docs/linking.md; PostGIS migration 0015). A report without a group row is a group
# of its own. Levels and per-field weights as JSON text; times as integer microseconds.
_V9_LINKS = sql_step(
    "CREATE TABLE report_links (id TEXT PRIMARY KEY, a TEXT NOT NULL, b TEXT NOT NULL,"
    " segment_a TEXT, segment_b TEXT, levels TEXT NOT NULL, per_field TEXT NOT NULL,"
    " weight REAL NOT NULL, state TEXT NOT NULL DEFAULT 'proposed',"
    " created_at INTEGER NOT NULL, reviewed_by TEXT, reviewed_at INTEGER,"
    " CHECK (a < b), UNIQUE (a, b))",
    "CREATE INDEX report_links_b ON report_links (b)",
    "CREATE INDEX report_links_created ON report_links (created_at, id)",
    "CREATE INDEX report_links_confirmed ON report_links (state) WHERE state = 'confirmed'",
    "CREATE TABLE report_groups (report_id TEXT PRIMARY KEY, group_id TEXT NOT NULL,"
    " is_anchor INTEGER NOT NULL, group_people INTEGER NOT NULL) WITHOUT ROWID",
)

# Surge detection's token, written with the series states (issue #19; PostGIS migration 0016):
# a store trusts the states it keeps in memory while the token is the one it wrote
# (service/storage/surge_cache.py).
_V10_SURGE_TOKEN = sql_step(
    "CREATE TABLE surge_token (only_row INTEGER PRIMARY KEY CHECK (only_row = 1),"
    " token INTEGER NOT NULL)",
    "INSERT INTO surge_token (only_row, token) VALUES (1, 0)",
)

# Groups counted once (issue #20, docs/linking.md; PostGIS migration 0017). ``group_days`` and
# ``group_months``: what linking changes in the count rollups per UTC day / month (integer
# microseconds) and (segment_id, side, kind, direction), '' for none: a linked report's is_anchor - 1 and group_people - people_count,
# so that groups = reports + groups and people_est = people + people. Written with report_groups
# (storage/sqlite/links.py). The release's cells gain groups and people_est, the cut in place
# counted again. (Step 12 in the lead's numbering: step 11 is another helper's; until the two are
# merged this is the 11th entry of MIGRATIONS.)
_V11_GROUP_COUNTS = sql_step(
    "CREATE TABLE group_days (period INTEGER NOT NULL, segment_id TEXT NOT NULL,"
    " side TEXT NOT NULL, kind TEXT NOT NULL, direction TEXT NOT NULL,"
    " groups INTEGER NOT NULL, people INTEGER NOT NULL,"
    " PRIMARY KEY (period, segment_id, side, kind, direction)) WITHOUT ROWID",
    "CREATE TABLE group_months (period INTEGER NOT NULL, segment_id TEXT NOT NULL,"
    " side TEXT NOT NULL, kind TEXT NOT NULL, direction TEXT NOT NULL,"
    " groups INTEGER NOT NULL, people INTEGER NOT NULL,"
    " PRIMARY KEY (period, segment_id, side, kind, direction)) WITHOUT ROWID",
    *(
        f"INSERT INTO {table} (period, segment_id, side, kind, direction, groups, people)"
        f" SELECT {period}, coalesce(r.segment_id, ''),"
        " coalesce(r.side, ''), r.kind, coalesce(r.direction, ''), sum(g.is_anchor - 1),"
        " sum(g.group_people - r.people_count)"
        " FROM report_groups g JOIN reports r ON r.id = g.report_id GROUP BY 1, 2, 3, 4, 5"
        for table, period in (
            ("group_days", "r.observed_at - r.observed_at % 86400000000"),
            (
                "group_months",
                "CAST(strftime('%s', strftime('%Y-%m-01', r.observed_at / 1000000, 'unixepoch'))"
                " AS INTEGER) * 1000000",
            ),
        )
    ),
    "ALTER TABLE release_cells ADD COLUMN groups INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE release_cells ADD COLUMN people_est INTEGER NOT NULL DEFAULT 0",
    "UPDATE release_cells AS c SET groups = n.groups, people_est = n.people_est"
    " FROM (SELECT r.observed_at / 86400000000 AS day, r.segment_id, r.kind, r.direction,"
    " r.side, sum(g.report_id IS NULL OR g.is_anchor) AS groups,"
    " sum(coalesce(g.group_people, r.people_count)) AS people_est"
    " FROM reports r LEFT JOIN report_groups g ON g.report_id = r.id"
    " WHERE r.observed_at < (SELECT through FROM release_info) * 86400000000"
    " GROUP BY 1, 2, 3, 4, 5) AS n"
    " WHERE c.day = n.day AND c.kind = n.kind AND c.segment_id IS n.segment_id"
    " AND c.direction IS n.direction AND c.side IS n.side",
)

# The stores' estimates of u and each segment's crowding (issue #20, docs/linking.md "Model in
# the stores"; PostGIS migration 0020): one row per estimate, the latest few kept, u and the
# crowding as JSON text. Each link records the version of the estimate it was scored with (0:
# the defaults), so that a new estimate rescores the proposed links scored before it. Versions
# are never used twice (AUTOINCREMENT), even after every row is deleted: linkers cache a model by
# its version.
_V12_LINK_MODELS = sql_step(
    "CREATE TABLE link_models (version INTEGER PRIMARY KEY AUTOINCREMENT,"
    " estimated_at INTEGER NOT NULL,"
    " border_version INTEGER NOT NULL, reports INTEGER NOT NULL, pairs INTEGER NOT NULL,"
    " u TEXT NOT NULL, crowding TEXT NOT NULL)",
    "ALTER TABLE report_links ADD COLUMN model_version INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX report_links_rescore ON report_links (model_version) WHERE state = 'proposed'",
)

MIGRATIONS: tuple[MigrationStep, ...] = (
    _V1_SEGMENTS_AND_REPORTS,
    _V2_COUNT_ROLLUPS,
    _V3_ACCESS,
    _V4_RETENTION,
    _V5_BORDER_VERSION,
    _V6_PUBLIC_RELEASE,
    _V7_ALERTS_AND_WEBHOOKS,
    _V8_SURGE_SERIES,
    _V9_LINKS,
    _V10_SURGE_TOKEN,
    _V11_GROUP_COUNTS,
    _V12_LINK_MODELS,
)


def schema_version(conn: sqlite3.Connection) -> int:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    return int(version)


def migrate(conn: sqlite3.Connection, *, steps: Sequence[MigrationStep] = MIGRATIONS) -> int:
    """Apply the steps the file lacks, inside the caller's write transaction; return the version.

    Raises SchemaTooNew for a file whose version is beyond ``steps``: this code would misread it.
    """
    current = schema_version(conn)
    target = len(steps)
    if current > target:
        raise SchemaTooNew(
            f"the database is at schema version {current}, but this version of the service "
            f"knows versions up to {target}: upgrade the service or use another file"
        )
    for version in range(current + 1, target + 1):
        steps[version - 1](conn)
    if target != current:
        # PRAGMA takes no bound parameters; target is an int we computed, not input.
        conn.execute(f"PRAGMA user_version = {int(target)}")
    return target
