"""Opening SQLite files: URLs, pragmas, migrations between schema versions, unusable files."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from service.domain.errors import StoreUnavailable
from service.storage.sqlite import SqliteStore
from service.storage.sqlite.database import path_from_url
from service.storage.sqlite.schema import MIGRATIONS, SchemaTooNew, sql_step
from tests.factories import make_segment

SEGMENT = make_segment("a", end_km=1.0, properties={"segment_id": "a"})


def raw(path: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(path))


def user_version(path: Path) -> int:
    with raw(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def table_names(path: Path) -> set[str]:
    with raw(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}


def test_absolute_and_relative_urls_name_files() -> None:
    assert path_from_url("sqlite:////srv/data/crossings.db") == Path("/srv/data/crossings.db")
    assert path_from_url("sqlite:///crossings.db") == Path("crossings.db")
    assert path_from_url("sqlite:///var/c.db") == Path("var/c.db")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/db",
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///x.db?mode=ro",
    ],
)
def test_urls_that_name_no_file_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        path_from_url(url)


def test_relative_url_creates_the_file_and_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = SqliteStore.open("sqlite:///var/data/crossings.db")
    store.close()
    assert (tmp_path / "var" / "data" / "crossings.db").is_file()


def test_new_file_is_in_wal_mode_at_the_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "crossings.db"
    SqliteStore.open_path(path).close()
    with raw(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert user_version(path) == len(MIGRATIONS)


def test_older_file_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "crossings.db"
    old = SqliteStore.open_path(path)
    old.replace_segments([SEGMENT])
    old.close()
    next_step = sql_step("CREATE TABLE added_later (x INTEGER)")
    upgraded = SqliteStore.open_path(path, migrations=(*MIGRATIONS, next_step))
    try:
        assert upgraded.list_segments() == [SEGMENT]
    finally:
        upgraded.close()
    assert user_version(path) == len(MIGRATIONS) + 1
    assert "added_later" in table_names(path)


def test_failed_upgrade_leaves_the_file_at_its_old_version(tmp_path: Path) -> None:
    path = tmp_path / "crossings.db"
    SqliteStore.open_path(path).close()
    good = sql_step("CREATE TABLE added_later (x INTEGER)")
    bad = sql_step("CREATE TABLE broken (")
    with pytest.raises(sqlite3.OperationalError):
        SqliteStore.open_path(path, migrations=(*MIGRATIONS, good, bad))
    assert user_version(path) == len(MIGRATIONS)
    assert "added_later" not in table_names(path)


def test_file_from_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "crossings.db"
    with raw(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(SchemaTooNew, match="schema version"):
        SqliteStore.open_path(path)
    assert user_version(path) == len(MIGRATIONS) + 1
    assert issubclass(SchemaTooNew, StoreUnavailable)


def test_path_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        SqliteStore.open_path(tmp_path / "a-file" / "crossings.db")


def test_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "crossings.db"
    path.write_bytes(b"this is not an SQLite file, but it is long enough to have a header" * 20)
    with pytest.raises(StoreUnavailable):
        SqliteStore.open_path(path)
